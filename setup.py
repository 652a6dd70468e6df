"""
Setuptools build script for the lnn_control ament_python package.

Two ways of installing are supported, and in both the executables end up where
``ros2 run`` and launch_ros look (``<prefix>/lib/lnn_control``) and the share
files under ``<prefix>/share/lnn_control``, where the package finds them itself
(``lnn_control.share``; no ``AMENT_PREFIX_PATH`` needed):

* On a ROS 2 install (colcon): ``rclpy`` and the message packages come from
  apt/rosdep (see package.xml), so they are deliberately NOT listed in
  ``install_requires``.  colcon honours setup.cfg and puts the console scripts
  themselves in ``<prefix>/lib/lnn_control``.
* Without ROS (plain virtualenv, ``pip install --user``, ``--prefix``):
  ``pip install -r requirements.txt`` (which includes the ros-kilted-* PyPI
  wheels, also available as the ``ros-pypi`` extra) then ``pip install .``.
  pip ignores setup.cfg and generates the console scripts in ``<prefix>/bin``;
  ``InstallData`` adds a small launcher per console script to
  ``<prefix>/lib/lnn_control`` that runs that one.
"""
from glob import glob
import os

from setuptools import find_packages, setup
try:
    from setuptools.command.install_data import install_data
except ImportError:     # older setuptools (65 here): its distutils, which it provides
    from distutils.command.install_data import install_data

package_name = 'lnn_control'


def _files(*patterns):
    """Sorted, de-duplicated regular files matching any of the glob patterns."""
    found = set()
    for pattern in patterns:
        found.update(p for p in glob(pattern) if os.path.isfile(p))
    return sorted(found)


# A launcher in <prefix>/lib/lnn_control for each console script of a pip install.
# pip generates the console scripts (with this prefix's interpreter) in the scheme's
# scripts directory, <prefix>/bin for every POSIX scheme (venv, --user: ~/.local,
# --prefix, /usr/local), i.e. ../../bin from here. A shell script, not Python: a
# wheel cannot know the interpreter, and pip rewrites shebangs in bin/ only.
LAUNCHER = """#!/bin/sh
# {name} ({target}) where `ros2 run` and launch_ros look for it:
# runs the console script pip generated in <prefix>/bin for this prefix's Python.
exe="$(dirname "$0")/../../bin/{name}"
if [ ! -x "$exe" ]; then
    echo "{name}: $exe is missing: reinstall {package} (pip install)" >&2
    exit 127
fi
exec "$exe" "$@"
"""


class InstallData(install_data):
    """
    install_data, plus the launchers in ``<prefix>/lib/lnn_control`` of a pip install.

    Written into the install (or wheel) tree with mode 755, which wheels record and pip
    restores. Not when the console scripts themselves are installed there (colcon, or
    ``setup.py install`` with setup.cfg's install_scripts); colcon's ``--symlink-install``
    runs ``develop`` (scripts there too) and its own ``symlink_data``, not this class.
    """

    def run(self):
        super().run()
        scripts = self.get_finalized_command('install').install_scripts
        libexec = os.path.join(self.install_dir, 'lib', package_name)
        if os.path.abspath(scripts) == os.path.abspath(libexec):
            return
        os.makedirs(libexec, exist_ok=True)
        for entry in self.distribution.entry_points['console_scripts']:
            name, target = (part.strip() for part in entry.split('='))
            path = os.path.join(libexec, name)
            with open(path, 'w', encoding='utf-8') as f:
                f.write(LAUNCHER.format(name=name, package=package_name, target=target))
            os.chmod(path, 0o755)
            self.outfiles.append(path)


ROS_PYPI = [
    'ros-kilted-rclpy==9.1.2',
    'ros-kilted-rmw-fastrtps-cpp==9.3.3',
    'ros-kilted-fastdds==3.2.3',
    'ros-kilted-std-msgs==5.5.1',
    'ros-kilted-sensor-msgs==5.5.1',
    'ros-kilted-std-srvs==5.5.1',
    'ros-kilted-diagnostic-msgs==5.5.1',
    'ros-kilted-rosgraph-msgs==2.3.0',
    'ros-kilted-trajectory-msgs==5.5.1',
    'ros-kilted-builtin-interfaces==2.3.0',
    'ros-kilted-ament-index-python==1.11.0',
]

setup(
    name=package_name,
    version='0.1.0',
    description='Adaptive reservoir-computing ("liquid") controller for ROS 2',
    license='Apache-2.0',
    maintainer='lnn_control maintainers',
    maintainer_email='maintainers@lnn-control.dev',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={package_name: ['models/*.xml', 'models/zoo/*.xml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', _files(
            'launch/*.launch.py', 'launch/*.launch.xml', 'launch/*.launch.yaml',
            'launch/*.py', 'launch/*.xml', 'launch/*.yaml')),
        ('share/' + package_name + '/config', _files(
            'config/*.yaml', 'config/*.yml', 'config/*.sdf', 'config/*.urdf*',
            'config/*.xacro', 'config/*.xml')),
    ],
    python_requires='>=3.10',
    # rclpy & messages: apt on a ROS install, or the 'ros-pypi' extra /
    # requirements.txt on a machine without ROS.
    install_requires=[
        'numpy',
        'numba',
        'pyyaml',
        'mujoco',
        'matplotlib',
        'mcap',
        'mcap-ros2-support',
        'tqdm',
    ],
    extras_require={
        'test': ['pytest'],
        'ros-pypi': ROS_PYPI,
        'bench': ['reservoirpy==0.4.2'],
    },
    zip_safe=True,
    cmdclass={'install_data': InstallData},
    entry_points={
        'console_scripts': [
            'lnn_controller = lnn_control.ros.controller_node:main',
            'lnn_sim = lnn_control.ros.sim_node:main',
            'lnn-control = lnn_control.cli:main',
        ],
    },
)
