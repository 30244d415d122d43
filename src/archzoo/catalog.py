"""The course: all 64 papers, registered from the start (metadata only).

A paper's status is derived from what its folder registers and from the
committed results, never typed here (see `registry.Paper.status`).
"""

# slug, title, arXiv id (None where the paper has none), year, family, one-line summary
PAPERS = [
    # cnn: classic CNNs and normalization
    ("alexnet", "ImageNet Classification with Deep Convolutional Neural Networks", None, 2012, "cnn",
     "Deep CNN with ReLU, LRN, overlapping pooling, dropout and two-GPU grouped connectivity."),
    ("resnet", "Deep Residual Learning for Image Recognition", "1512.03385", 2015, "cnn",
     "Residual blocks F(x) + x let very deep plain nets train without degradation."),
    ("batch_norm", "Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
     "1502.03167", 2015, "cnn", "Normalize activations with mini-batch statistics for faster, higher-rate training."),
    ("group_norm", "Group Normalization", "1803.08494", 2018, "cnn",
     "Normalize over channel groups per sample: accuracy independent of batch size."),
    ("weight_standardization", "Micro-Batch Training with Batch-Channel Normalization and Weight Standardization",
     "1903.10520", 2019, "cnn", "Standardize conv weights per output channel so GN trains like BN at tiny batches."),
    ("bit", "Big Transfer (BiT): General Visual Representation Learning", "1912.11370", 2019, "cnn",
     "ResNetV2 with GN+WS pre-trained at scale and fine-tuned with the BiT-HyperRule."),
    ("evonorm", "Evolving Normalization-Activation Layers", "2004.02967", 2020, "cnn",
     "Normalization-activation layers (EvoNorm-B0/S0) found by evolutionary search over primitive ops."),
    ("nfnet", "High-Performance Large-Scale Image Recognition Without Normalization", "2102.06171", 2021, "cnn",
     "Normalizer-free ResNets with scaled WS and adaptive gradient clipping."),
    # attention: efficient Transformers
    ("reformer", "Reformer: The Efficient Transformer", "2001.04451", 2020, "attention",
     "LSH attention, reversible residual layers and chunked feed-forward for long sequences."),
    ("linformer", "Linformer: Self-Attention with Linear Complexity", "2006.04768", 2020, "attention",
     "Project keys and values along the sequence to a fixed length k: linear attention."),
    ("performer", "Rethinking Attention with Performers", "2009.14794", 2020, "attention",
     "FAVOR+: positive orthogonal random features approximate softmax attention in linear time."),
    ("longformer", "Longformer: The Long-Document Transformer", "2004.05150", 2020, "attention",
     "Sliding-window, dilated and global attention with linear memory."),
    ("bigbird", "Big Bird: Transformers for Longer Sequences", "2007.14062", 2020, "attention",
     "Block-sparse global + window + random attention with linear cost."),
    ("linear_transformer", "Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
     "2006.16236", 2020, "attention", "Kernel feature map elu+1 makes attention linear and causal attention an RNN."),
    ("synthesizer", "Synthesizer: Rethinking Self-Attention in Transformer Models", "2005.00743", 2020, "attention",
     "Attention weights synthesized without token-token dot products (dense, random, factorized)."),
    # vision
    ("vit", "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", "2010.11929", 2020,
     "vision", "A plain Transformer on image patches matches CNNs given enough data."),
    ("mlp_mixer", "MLP-Mixer: An all-MLP Architecture for Vision", "2105.01601", 2021, "vision",
     "Alternate token-mixing and channel-mixing MLPs; no convolution, no attention."),
    ("perceiver", "Perceiver: General Perception with Iterative Attention", "2103.03206", 2021, "vision",
     "Cross-attend a small latent array to any input: one architecture for many modalities."),
    ("involution", "Involution: Inverting the Inherence of Convolution for Visual Recognition", "2103.06255", 2021,
     "vision", "Location-specific, channel-shared kernels generated from the input (RedNet)."),
    ("lambda_networks", "LambdaNetworks: Modeling Long-Range Interactions Without Attention", "2102.08602", 2021,
     "vision", "Summarize context into linear functions (lambdas) instead of attention maps."),
    ("axial_deeplab", "Axial-DeepLab: Stand-Alone Axial-Attention for Panoptic Segmentation", "2003.07853", 2020,
     "vision", "Position-sensitive axial attention along rows then columns, for panoptic segmentation."),
    # science: networks as scientific models
    ("neural_ode", "Neural Ordinary Differential Equations", "1806.07366", 2018, "science",
     "Continuous-depth networks solved by ODE solvers, trained with the adjoint method."),
    ("fno", "Fourier Neural Operator for Parametric Partial Differential Equations", "2010.08895", 2020, "science",
     "Learn PDE solution operators with convolutions in Fourier space; resolution invariant."),
    ("siren", "Implicit Neural Representations with Periodic Activation Functions", "2006.09661", 2020, "science",
     "Sine activations with a principled init represent signals and their derivatives."),
    ("neural_ca", "Growing Neural Cellular Automata", None, 2020, "science",
     "A learned local update rule grows, persists and regenerates an image from one cell."),
    ("gon", "Gradient Origin Networks", "2007.02798", 2020, "science",
     "Latents as the negative gradient of the loss at the origin: an encoder-free autoencoder."),
    ("hopfield", "Hopfield Networks is All You Need", "2008.02217", 2020, "science",
     "Modern continuous Hopfield networks: the update rule is attention, with exponential capacity."),
    ("symbolic_gnn", "Discovering Symbolic Models from Deep Learning with Inductive Biases", "2006.11287", 2020,
     "science", "Sparse graph-network messages distilled into symbolic force laws."),
    ("metnet", "MetNet: A Neural Weather Model for Precipitation Forecasting", "2003.12140", 2020, "science",
     "ConvLSTM + axial attention forecast precipitation from radar, conditioned on lead time."),
    # moe: conditional computation and memory
    ("switch_transformer",
     "Switch Transformers: Scaling to Trillion Parameter Models with Simple and Efficient Sparsity", "2101.03961",
     2021, "moe", "Top-1 expert routing with capacity and a load-balancing loss."),
    ("gshard", "GShard: Scaling Giant Models with Conditional Computation and Automatic Sharding", "2006.16668", 2020,
     "moe", "Top-2 gated mixture of experts with capacity, group dispatch and expert parallelism."),
    ("feedback_transformer", "Addressing Some Limitations of Transformers with Feedback Memory", "2002.09402", 2020,
     "moe", "Every layer attends to a memory mixing all layers of the past: recurrent state tracking."),
    ("expire_span", "Not All Memories are Created Equal: Learning to Forget by Expiring", "2105.06548", 2021, "moe",
     "Predict how long each memory lives; expired memories are dropped."),
    ("terraformer", "Sparse is Enough in Scaling Transformers", "2111.12763", 2021, "moe",
     "Sparse feed-forward and QKV layers for fast single-token decoding."),
    # learning: training methods and analysis
    ("lottery_ticket", "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks", "1803.03635", 2018,
     "learning", "Iterative magnitude pruning with rewinding finds sparse subnetworks that train to full accuracy."),
    ("supsup", "Supermasks in Superposition", "2006.14769", 2020, "learning",
     "Task-specific supermasks over fixed random weights; task inferred by gradient of entropy."),
    ("fixmatch", "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence", "2001.07685", 2020,
     "learning", "Pseudo-labels from weak augmentations supervise strong augmentations above a threshold."),
    ("manifold_mixup", "Manifold Mixup: Better Representations by Interpolating Hidden States", "1806.05236", 2018,
     "learning", "Mix hidden states and labels at a random layer for smoother decision boundaries."),
    ("dfa", "Direct Feedback Alignment Scales to Modern Deep Learning Tasks and Architectures", "2006.12878", 2020,
     "learning", "Train with fixed random projections of the output error instead of backpropagation."),
    ("odds_are_odd", "The Odds are Odd: A Statistical Test for Detecting Adversarial Examples", "1902.04818", 2019,
     "learning", "Noise-induced changes of log-odds detect and correct adversarial examples."),
    ("naswot", "Neural Architecture Search without Training", "2006.04647", 2020, "learning",
     "Score untrained architectures by the overlap of their ReLU activation codes."),
    ("scan", "SCAN: Learning to Classify Images without Labels", "2005.12320", 2020, "learning",
     "Self-supervised features, neighbour consistency and self-labeling for unsupervised classification."),
    ("petri_dish", "Synthetic Petri Dish: A Novel Surrogate Model for Rapid Architecture Search", "2005.13092", 2020,
     "learning", "Rank architectures with tiny motif networks trained on learned synthetic data."),
    ("poet", "Paired Open-Ended Trailblazer (POET): Endlessly Generating Increasingly Complex and Diverse Learning "
     "Environments and Their Solutions", "1901.01753", 2019, "learning",
     "Co-evolve environments and agents with transfer between them."),
    ("disentanglement", "Challenging Common Assumptions in the Unsupervised Learning of Disentangled Representations",
     "1811.12359", 2018, "learning",
     "Disentanglement metrics depend more on seeds and hyperparameters than on method."),
    # generative
    ("gan", "Generative Adversarial Networks", "1406.2661", 2014, "generative",
     "A generator and a discriminator play a minimax game."),
    ("singan", "SinGAN: Learning a Generative Model from a Single Natural Image", "1905.01164", 2019, "generative",
     "A pyramid of patch GANs learns the internal statistics of one image."),
    ("transgan", "TransGAN: Two Pure Transformers Can Make One Strong GAN, and That Can Scale Up", "2102.07074", 2021,
     "generative", "Transformer generator and discriminator with grid attention and DiffAugment."),
    ("nvae", "NVAE: A Deep Hierarchical Variational Autoencoder", "2007.03898", 2020, "generative",
     "Deep hierarchical VAE with residual cells and residual normal distributions."),
    ("ardm", "Autoregressive Diffusion Models", "2110.02037", 2021, "generative",
     "Order-agnostic autoregressive models with parallel generation and lossless compression."),
    ("set_distribution", "Set Distribution Networks: a Generative Model for Sets of Images", "2006.10705", 2020,
     "generative", "Encode sets to codes, learn a prior, and generate consistent sets."),
    ("tunit", "Rethinking the Truly Unsupervised Image-to-Image Translation", "2006.06500", 2020, "generative",
     "A guiding network discovers domains and styles for translation without labels."),
    ("jukebox", "Jukebox: A Generative Model for Music", "2005.00341", 2020, "generative",
     "Hierarchical VQ-VAE with codebook restarts and transformer priors for raw audio."),
    # perception and sequence
    ("capsules", "Dynamic Routing Between Capsules", "1710.09829", 2017, "perception",
     "Vector capsules with routing by agreement and reconstruction."),
    ("icosahedral_cnn", "Gauge Equivariant Convolutional Networks and the Icosahedral CNN", "1902.04615", 2019,
     "perception", "Gauge-equivariant convolution on the icosahedron for spherical signals."),
    ("attention_sampling", "Processing Megapixel Images with Deep Attention-Sampling Models", "1905.03711", 2019,
     "perception", "Sample a few high-resolution patches by attention with an unbiased estimator."),
    ("detr", "End-to-End Object Detection with Transformers", "2005.12872", 2020, "perception",
     "Set prediction with object queries and Hungarian matching: detection without NMS or anchors."),
    ("spinenet", "SpineNet: Learning Scale-Permuted Backbone for Recognition and Localization", "1912.05027", 2019,
     "perception", "A scale-permuted backbone with cross-scale connections found by search."),
    ("glom", "How to represent part-whole hierarchies in a neural network", "2102.12627", 2021, "perception",
     "Columns of level embeddings reach islands of agreement that represent parse trees."),
    ("virtex", "VirTex: Learning Visual Representations from Textual Annotations", "2006.06666", 2020, "perception",
     "Pre-train a CNN by captioning for data-efficient visual representations."),
    ("repnet", "Counting Out Time: Class Agnostic Video Repetition Counting in the Wild", "2006.15418", 2020,
     "perception", "A temporal self-similarity matrix bottleneck predicts periods and counts repetitions."),
    ("symbolic_math", "Deep Learning for Symbolic Mathematics", "1912.01412", 2019, "perception",
     "Seq2seq Transformers integrate expressions written as prefix trees."),
    ("bistable_rnn", "A bio-inspired bistable recurrent cell allows for long-lasting memory", "2006.05252", 2020,
     "perception", "Bistable recurrent cells (BRC, nBRC) keep information over hundreds of steps."),
    ("eats", "End-to-End Adversarial Text-to-Speech", "2006.03575", 2020, "perception",
     "Aligner with predicted durations and adversarial spectrogram training, end to end."),
]

FAMILIES = ("cnn", "attention", "vision", "science", "moe", "learning", "generative", "perception")

FAMILY_TITLES = {
    "cnn": "Classic CNNs and normalization",
    "attention": "Efficient Transformers",
    "vision": "Transformers, MLPs and attention in vision",
    "science": "Networks as scientific models",
    "moe": "Conditional computation and memory",
    "learning": "Training methods and analysis",
    "generative": "Generative models",
    "perception": "Perception and sequence",
}

# What the course asks each paper to reproduce at laptop scale; `docs/papers.md` shows it until the
# paper's own claims (with their criteria) are registered.
TO_REPRODUCE = {
    "alexnet": "ReLU reaches 25% training error several times faster than tanh (Fig. 1).",
    "resnet": "Degradation: the deeper plain net trains worse than the shallower one, the deep residual net better "
              "than both (Fig. 1, 6).",
    "batch_norm": "BN reaches a target accuracy in far fewer steps, trains at a rate where the plain net diverges, "
                  "and keeps activation distributions stable (MNIST sigmoid net).",
    "group_norm": "Error vs batch size 32..2: BN degrades as the batch shrinks, GN stays flat and beats BN at batch 2 "
                  "(Fig. 1).",
    "weight_standardization": "GN+WS at 1-2 images per batch matches BN at a large batch and trains lower than GN "
                              "alone.",
    "bit": "Pre-train, then fine-tune with the BiT-HyperRule on 1/5/10 examples per class: transfer beats training "
           "from scratch.",
    "evonorm": "S0 is batch-independent, B0 matches BN at large batch, the search beats the median random layer.",
    "nfnet": "NF-ResNet signal propagation matches a BN-ResNet; at a large rate and batch AGC keeps training stable.",
    "reformer": "LSH attention nears full attention on duplication as hashes grow (Table 2); reversible layers keep "
                "memory flat in depth.",
    "linformer": "Trained attention is low rank (Fig. 1); linear time and memory in n; accuracy near full attention.",
    "performer": "FAVOR+ error falls with features, orthogonal beats i.i.d. (Fig. 3); positive features stay stable; "
                 "linear cost.",
    "longformer": "Linear memory; window + global attention nears full attention on a long-document task, window-only "
                  "falls short.",
    "bigbird": "Linear memory; random + window + global graph has a far smaller diameter; accuracy near full "
               "attention.",
    "linear_transformer": "Causal parallel form equals the recurrent form; per-token generation time stays constant "
                          "while softmax grows.",
    "synthesizer": "A random synthesizer learns tasks far above chance; a mixture with dot-product matches or beats "
                   "it.",
    "vit": "With little data ViT trails a ResNet and the gap closes with more data; attention distance grows with "
           "depth (Fig. 7).",
    "mlp_mixer": "On par with a ViT of equal size on small data, at a higher throughput.",
    "perceiver": "Cost linear in input size; one architecture learns several modalities; invariant to a fixed pixel "
                 "permutation (Table 2).",
    "involution": "RedNet matches a ResNet of the same depth with fewer parameters and FLOPs.",
    "lambda_networks": "Memory grows as O(nkv) where self-attention grows as O(n^2); position lambdas are translation "
                       "equivariant.",
    "axial_deeplab": "Cost O(hw(h+w)) against O((hw)^2); position sensitivity improves accuracy; panoptic "
                     "segmentation of shape scenes.",
    "neural_ode": "Adjoint gradients equal backprop, with flat memory; ODE-Net matches a ResNet with fewer parameters; "
                  "a latent ODE extrapolates spirals.",
    "fno": "Low error on Burgers; zero-shot super-resolution (train 64, test 256); beats a CNN of similar size.",
    "siren": "On the camera image SIREN's PSNR far exceeds ReLU MLPs; activations keep the arcsine distribution at "
             "init.",
    "neural_ca": "Grows a target image from one cell; pool + damage training regenerates after damage.",
    "gon": "One-step GON reconstructs better than an autoencoder with the same decoder and no encoder.",
    "hopfield": "The update equals attention; one-step retrieval far beyond 0.14d; energy falls; HopfieldPooling "
                "solves a multiple-instance task.",
    "symbolic_gnn": "Leading message components are linear in the true force (R^2 > 0.9); symbolic regression "
                    "recovers the force law.",
    "metnet": "Beats persistence and extrapolation on generated radar at longer lead times.",
    "switch_transformer": "At equal FLOPs Switch reaches a target loss in fewer steps than dense; balancing cuts "
                          "dropped tokens; expert parallelism is exact.",
    "gshard": "Balanced load; top-2 vs top-1 at equal capacity; parallel equals single-process.",
    "feedback_transformer": "A shallow feedback transformer tracks state where a standard one of equal size fails.",
    "expire_span": "Memory stays far smaller than a full cache at equal accuracy, and spans concentrate on the keys.",
    "terraformer": "Sparse single-token decoding several times faster than dense at a small loss gap.",
    "lottery_ticket": "Tickets at 10-20% of the weights match dense accuracy; random re-initialisation is worse at "
                      "<= 5%.",
    "supsup": "Many permuted tasks without forgetting; one-shot task inference >= 90% correct.",
    "fixmatch": "With 4 labels per class FixMatch far exceeds supervised-only training.",
    "manifold_mixup": "Better test error and calibration than ERM and input mixup; flatter class representations.",
    "dfa": "DFA trains an MLP and a small Transformer far beyond chance; its updates align with the gradient.",
    "odds_are_odd": "Detects adversarial examples >= 90% at 5% false positives; corrected accuracy far above "
                    "attacked.",
    "naswot": "The untrained score correlates with trained accuracy (Kendall tau >= 0.4); search picks an "
              "above-median cell.",
    "scan": "SCAN beats k-means on pretext features, which beats k-means on pixels.",
    "petri_dish": "Its ranking correlates better with full-scale results than a small real subset at equal compute.",
    "poet": "POET solves environments that direct optimisation from scratch does not.",
    "disentanglement": "Seeds and hyperparameters move the disentanglement metrics more than the method does.",
    "gan": "Covers the modes of a 2D mixture; the non-saturating loss learns where minimax saturates.",
    "singan": "Samples match the image's patch statistics (SIFID) yet are not copies.",
    "transgan": "Trains stably; DiffAugment and locality-aware init improve its FID.",
    "nvae": "Lower bits/dim than a plain VAE of the same size.",
    "ardm": "Likelihood near an ordered ARM; fewer generation steps lose little; coded size near the model's bits.",
    "set_distribution": "Generated sets stay consistent in identity and differ from the training sets.",
    "tunit": "Pseudo-domains recover the true domains; translation changes style and keeps content.",
    "jukebox": "Codebook restarts prevent collapse; reconstruction degrades gracefully with hop length; samples keep "
               "pitch statistics.",
    "capsules": "Accurate classification; overlapping digits separated by per-capsule reconstruction.",
    "icosahedral_cnn": "Exact equivariance to the 60 icosahedral rotations; rotated spherical digits beat a planar "
                       "CNN.",
    "attention_sampling": "Near full-resolution accuracy on megapixel digits at a fraction of the memory and time.",
    "detr": "Detects objects in generated scenes without NMS or anchors (mAP@0.5).",
    "spinenet": "SpineNet-49 matches the paper's size and beats a ResNet-FPN of similar cost.",
    "glom": "Islands of agreement: embeddings within an object agree more than across objects.",
    "virtex": "Caption pre-training beats random init on a linear probe; bidirectional beats forward-only.",
    "repnet": "Counts unseen periodic videos better than a spectral baseline.",
    "symbolic_math": "Solves a held-out share of integrals, rising with beam size.",
    "bistable_rnn": "On copy-first-input over 300+ steps nBRC remembers while GRU and LSTM fail.",
    "eats": "Learns durations and approaches target spectrograms on generated speech-like data.",
}
