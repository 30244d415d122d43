"""`archzoo bench <family>`: parts registered by papers run in name order and land in one section."""

from types import SimpleNamespace

from archzoo.engine.bench import family_parts, register_family_bench
from archzoo.registry import TABLES, get_bench


def test_a_family_suite_runs_its_parts_in_name_order_into_one_section(tmp_path):
    seen = []

    def part(name):
        def fn(opts):
            seen.append((name, opts.quick, opts.repeats))
            return f"### {name}\n\nmeasured {name}"
        return fn

    register_family_bench("testfamily", "b_part", part("b_part"))
    register_family_bench("testfamily", "a_part", part("a_part"))
    try:
        assert [n for n, _ in family_parts("testfamily")] == ["a_part", "b_part"]
        out = tmp_path / "benchmarks.md"
        get_bench("testfamily")(SimpleNamespace(quick=True, device="cpu", pattern="*", out=out))
        assert seen == [("a_part", True, 2), ("b_part", True, 2)]
        text = out.read_text()
        assert text.index("measured a_part") < text.index("measured b_part")
        assert text.count("<!-- bench:testfamily -->") == 1
        get_bench("testfamily")(SimpleNamespace(quick=True, device="cpu", pattern="b_*", out=out))
        text = out.read_text()                  # a --pattern run: its own section, the whole one stays as it was
        assert text.count("<!-- bench:testfamily -->") == 1 and "measured a_part" in text
        assert text.count("<!-- bench:testfamily-b_- -->") == 1 and "The testfamily family: `b_*` only" in text
    finally:
        for key in ("testfamily/a_part", "testfamily/b_part"):
            TABLES["family benchmark"].pop(key)
        TABLES["benchmark"].pop("testfamily")
