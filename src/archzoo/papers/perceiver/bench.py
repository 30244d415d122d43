"""`archzoo bench models`: the ImageNet Perceiver runs at batch 1.

Its eight cross-attends each form a (512 x 50,176) attention matrix per image, and the forward keeps them for the
backward pass: about 5.1 GB of live tensors per image at 224 px (measured), so the default batch of 8 (about 41 GB)
does not fit in a 24 GB workstation.
"""

from ...engine.bench import register_batch_limit

register_batch_limit("perceiver_imagenet", 1, "its eight cross-attends over the 50,176 pixels of a 224 px image hold "
                     "about 5.1 GB of live tensors per image, so the default batch of 8 (about 41 GB) does not fit "
                     "in 24 GB")
