"""docs/architecture.md stays true: every module and path it names exists."""
from pathlib import Path
import re

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / 'docs' / 'architecture.md'


def named_paths():
    text = DOC.read_text(encoding='utf-8')
    return sorted(set(re.findall(r'\b((?:lnn_control|test|launch|docs)/[\w/]*\w(?:\.\w+)?)', text)))


def test_the_page_names_modules():
    paths = named_paths()
    assert len(paths) >= 25, paths
    assert 'lnn_control/controller.py' in paths


@pytest.mark.parametrize('path', named_paths())
def test_every_named_module_exists(path):
    assert (ROOT / path).exists(), f'docs/architecture.md names {path}, which does not exist'


def test_every_core_and_ros_module_is_placed():
    """A new module must be given its place on the page."""
    text = DOC.read_text(encoding='utf-8')
    modules = [p.relative_to(ROOT).as_posix()
               for p in (ROOT / 'lnn_control').rglob('*.py') if p.name != '__init__.py']
    missing = [m for m in modules if m not in text]
    assert not missing, f'modules not on docs/architecture.md: {missing}'
