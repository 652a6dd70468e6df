"""
Setuptools build script for the lnn_control ament_python package.

Two ways of installing are supported:

* On a ROS 2 install (colcon): ``rclpy`` and the message packages come from
  apt/rosdep (see package.xml), so they are deliberately NOT listed in
  ``install_requires``.  colcon honours setup.cfg and puts the executables in
  ``<prefix>/lib/lnn_control`` where ``ros2 run`` finds them.
* Without ROS (plain virtualenv): ``pip install -r requirements.txt`` (which
  includes the ros-kilted-* PyPI wheels, also available as the ``ros-pypi``
  extra) then ``pip install .``; pip puts the console scripts in ``<venv>/bin``
  and the share/ files under the venv prefix (set ``AMENT_PREFIX_PATH`` to the
  venv for ``ament_index_python`` to find them).
"""
from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'lnn_control'


def _files(*patterns):
    """Sorted, de-duplicated regular files matching any of the glob patterns."""
    found = set()
    for pattern in patterns:
        found.update(p for p in glob(pattern) if os.path.isfile(p))
    return sorted(found)


ROS_PYPI = [
    'ros-kilted-rclpy==9.1.2',
    'ros-kilted-rmw-fastrtps-cpp==9.3.3',
    'ros-kilted-fastdds==3.2.3',
    'ros-kilted-std-msgs==5.5.1',
    'ros-kilted-sensor-msgs==5.5.1',
    'ros-kilted-std-srvs==5.5.1',
    'ros-kilted-diagnostic-msgs==5.5.1',
    'ros-kilted-rosgraph-msgs==2.3.0',
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
    entry_points={
        'console_scripts': [
            'lnn_controller = lnn_control.ros.controller_node:main',
            'lnn_sim = lnn_control.ros.sim_node:main',
            'lnn-control = lnn_control.cli:main',
        ],
    },
)
