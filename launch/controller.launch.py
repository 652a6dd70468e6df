r"""
The adaptive controller alone, for a real (or any ros2_control) robot.

    ros2 launch lnn_control controller.launch.py params_file:=/path/to/my_robot.yaml
    ros2 launch lnn_control controller.launch.py namespace:=robot1 \
        params_file:=/path/to/my_robot.yaml commands_topic:=my_effort_controller/commands

Without ``params_file`` it runs the bundled pendulum's (``config/pendulum.yaml``): its
joints, gains and limits, for that simulation only; ``lnn-control params --format yaml
--plant my_robot.xml`` (or ``lnn-control gains``) starts a file for your robot.

The node reads ``joint_states`` (joint_state_broadcaster) and publishes
``commands`` (std_msgs/Float64MultiArray, one effort per entry of ``joints``),
remapped here to a forward_command_controller's ``<name>/commands`` with
``interface_name: effort``. Relative topic names resolve inside ``namespace``,
as a namespaced controller_manager's do. Parameters: ``docs/parameters.md``.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the controller node (and of its relative topics).'),
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare('lnn_control'), 'config', 'pendulum.yaml']),
            description='lnn_controller parameter file (joints, gains, limits, ...); '
                        "default: the bundled pendulum's, for its simulation only."),
        DeclareLaunchArgument(
            'commands_topic', default_value='effort_controller/commands',
            description='Command topic of the forward_command_controller (effort).'),
        DeclareLaunchArgument(
            'joint_states_topic', default_value='joint_states',
            description='JointState topic (joint_state_broadcaster).'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false', choices=['true', 'false'],
            description='Follow /clock (simulators) instead of the system clock.'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            choices=['debug', 'info', 'warn', 'error', 'fatal'],
            description='Logging level of the node.'),
        Node(
            package='lnn_control',
            executable='lnn_controller',
            name='lnn_controller',
            namespace=LaunchConfiguration('namespace'),
            output='screen',
            emulate_tty=True,
            parameters=[
                LaunchConfiguration('params_file'),
                {'use_sim_time': LaunchConfiguration('use_sim_time')},
            ],
            remappings=[
                ('commands', LaunchConfiguration('commands_topic')),
                ('joint_states', LaunchConfiguration('joint_states_topic')),
            ],
            ros_arguments=['--log-level', LaunchConfiguration('log_level')],
        ),
    ])
