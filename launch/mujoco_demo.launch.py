"""
MuJoCo simulator (lnn_sim) + adaptive controller (lnn_controller) over real topics.

    ros2 launch lnn_control mujoco_demo.launch.py                       # pendulum, lock-step
    ros2 launch lnn_control mujoco_demo.launch.py plant:=arm2 lockstep:=false
    ros2 param set /lnn_sim payload_scale 2.0                           # watch it re-adapt

Lock-step (default): the simulator publishes /clock and advances exactly one
control period per command; the controller runs on that clock
(use_sim_time), so a run is reproducible whatever the machine load. Real time
(lockstep:=false): the simulator runs against the wall clock and no /clock is
published. Record a run with ``ros2 bag record -s mcap /joint_states /commands
/clock /diagnostics`` (or the package's MCAP recorder).

Both nodes use the default topic names (joint_states, commands), the same
ones a ros2_control robot offers once ``commands`` is remapped to a
forward_command_controller (see controller.launch.py).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    plant = LaunchConfiguration('plant')
    lockstep = LaunchConfiguration('lockstep')
    return LaunchDescription([
        DeclareLaunchArgument(
            'plant', default_value='pendulum', choices=['pendulum', 'arm2', 'cartpole'],
            description='Bundled MuJoCo plant.'),
        DeclareLaunchArgument(
            'lockstep', default_value='true', choices=['true', 'false'],
            description='true: deterministic lock-step on simulated time (/clock); '
                        'false: real time.'),
        DeclareLaunchArgument(
            'payload_scale', default_value='1.0',
            description='Initial end-link mass/inertia scale (live: ros2 param set).'),
        DeclareLaunchArgument(
            'reference_mode', default_value='sum_of_sines',
            choices=['topic', 'hold', 'sine', 'sum_of_sines', 'point_to_point'],
            description='Reference the controller tracks (topic: /lnn_controller/reference).'),
        DeclareLaunchArgument(
            'params_file',
            default_value=[FindPackageShare('lnn_control'), '/config/', plant, '.yaml'],
            description="lnn_controller parameter file (default: the plant's own)."),
        Node(
            package='lnn_control',
            executable='lnn_sim',
            name='lnn_sim',
            output='screen',
            emulate_tty=True,
            # one node of the pair gone (refused parameters, a crash): the demo is over
            on_exit=Shutdown(reason='lnn_sim exited'),
            parameters=[{
                'model': plant,
                'lockstep': lockstep,
                'payload_scale': LaunchConfiguration('payload_scale'),
            }],
        ),
        Node(
            package='lnn_control',
            executable='lnn_controller',
            name='lnn_controller',
            output='screen',
            emulate_tty=True,
            on_exit=Shutdown(reason='lnn_controller exited'),
            parameters=[
                LaunchConfiguration('params_file'),
                {
                    'use_sim_time': lockstep,
                    'sync_to_joint_state_stamps': lockstep,
                    'reference.mode': LaunchConfiguration('reference_mode'),
                },
            ],
        ),
    ])
