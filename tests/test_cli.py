"""The command line: listings, generated docs, and start-up that does not import torch."""

import subprocess
import sys
from pathlib import Path

from glassforge.cli import main
from glassforge.sampling import SAMPLERS, SCHEDULES
from glassforge.sampling.catalog import samplers_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_samplers_lists_every_registered_name(capsys):
    assert main(["samplers"]) == 0
    out = capsys.readouterr().out
    listed = [line.split("  ")[0].strip() for line in out.splitlines() if line and not line.startswith(" ")]
    assert listed == list(SAMPLERS)


def test_verbose_listing_shows_formula_and_paper(capsys):
    assert main(["samplers", "-v"]) == 0
    out = capsys.readouterr().out
    assert SAMPLERS["Euler"].formula.split()[0] in out and "Karras et al. 2022" in out


def test_schedulers_listing(capsys):
    assert main(["schedulers"]) == 0
    out = capsys.readouterr().out
    for name in SCHEDULES:
        assert name in out


def test_docs_samplers_md_is_generated_from_the_registries():
    # regenerate with: glassforge samplers --markdown > docs/samplers.md
    assert (DOCS / "samplers.md").read_text() == samplers_markdown()


def test_help_does_not_import_torch():
    code = "import sys, glassforge.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
