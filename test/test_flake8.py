"""ament_flake8 over the package, the tests, the benchmarks, the launch files and setup.py."""
from ament_flake8.main import main_with_errors
import pytest

# The project's convention is 100 columns (ament_flake8's configuration says 99);
# everything else is ament's configuration as shipped.
LINE_LENGTH = 100


@pytest.mark.flake8
@pytest.mark.linter
@pytest.mark.unit
@pytest.mark.slow
def test_flake8(lint_paths):
    rc, errors = main_with_errors(argv=['--linelength', str(LINE_LENGTH), *lint_paths])
    assert rc == 0, \
        'Found %d code style errors / warnings:\n' % len(errors) + '\n'.join(errors)
