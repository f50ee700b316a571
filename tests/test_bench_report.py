"""bench/README.md is what the benchmarks' own markdown makes of the results files, and covers every one."""

from bench.report import RESULTS, SECTIONS, build

README = RESULTS.parent / "README.md"


def test_the_benchmark_docs_are_the_output_of_the_benchmarks():
    assert README.read_text() == build(), "bench/README.md is out of date: run python -m bench.report"


def test_every_results_file_has_a_section():
    covered = {path for _, patterns in SECTIONS for pattern in patterns for path in RESULTS.glob(pattern)}
    assert set(RESULTS.glob("*.json")) == covered


def test_every_section_names_its_command_date_and_machine():
    text = build()
    for path in RESULTS.glob("*.json"):
        section = text.split(f"### `bench/results/{path.name}`", 1)[1].split("\n### ", 1)[0]
        assert "recorded" in section or ("`python" in section or "`bench/" in section), path.name
