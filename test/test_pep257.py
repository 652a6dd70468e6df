"""ament_pep257 (docstring conventions, ament's selection) over the same files as flake8."""
from ament_pep257.main import main
import pytest


@pytest.mark.linter
@pytest.mark.pep257
@pytest.mark.unit
@pytest.mark.slow
def test_pep257(lint_paths):
    rc = main(argv=lint_paths)
    assert rc == 0, 'Found code style errors / warnings'
