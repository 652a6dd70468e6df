r"""
Gazebo (Harmonic) pendulum under ros2_control, driven by the adaptive controller.

    ros2 launch lnn_control gazebo_demo.launch.py                 # GUI
    ros2 launch lnn_control gazebo_demo.launch.py gz_args:="-r -s -v 2 $(ros2 pkg prefix \
        lnn_control)/share/lnn_control/config/empty_world.sdf"     # headless server

Needs ros_gz_sim, ros_gz_bridge, gz_ros2_control, ros2_controllers
(joint_state_broadcaster, forward_command_controller), robot_state_publisher
and xacro: see docs/gazebo.md.

Wiring (identical to a real ros2_control robot):
  gz sim  <- world config/empty_world.sdf, robot config/pendulum.urdf.xacro spawned
             from /robot_description; its gz_ros2_control plugin runs the
             controller_manager with config/gz_controllers.yaml
  joint_state_broadcaster -> /joint_states -> lnn_controller
  lnn_controller -> commands remapped to /effort_controller/commands
                 -> effort_controller (forward_command_controller, effort)
  ros_gz_bridge (config/gz_bridge.yaml): gz /clock -> ROS /clock (use_sim_time)
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import (Command, FindExecutable, LaunchConfiguration,
                                  PathJoinSubstitution)
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('lnn_control')
    world = PathJoinSubstitution([share, 'config', 'empty_world.sdf'])
    controllers = PathJoinSubstitution([share, 'config', 'gz_controllers.yaml'])
    robot_description = ParameterValue(
        Command([FindExecutable(name='xacro'), ' ',
                 PathJoinSubstitution([share, 'config', 'pendulum.urdf.xacro'])]),
        value_type=str)

    gazebo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare('ros_gz_sim'), 'launch', 'gz_sim.launch.py'])),
        launch_arguments={'gz_args': LaunchConfiguration('gz_args')}.items(),
    )
    robot_state_publisher = Node(
        package='robot_state_publisher',
        executable='robot_state_publisher',
        output='screen',
        parameters=[{'robot_description': robot_description, 'use_sim_time': True}],
    )
    spawn = Node(
        package='ros_gz_sim',
        executable='create',
        output='screen',
        arguments=['-topic', 'robot_description', '-name', 'lnn_pendulum',
                   '-allow_renaming', 'true'],
    )
    clock_bridge = Node(
        package='ros_gz_bridge',
        executable='parameter_bridge',
        output='screen',
        parameters=[{
            'config_file': PathJoinSubstitution([share, 'config', 'gz_bridge.yaml']),
            'use_sim_time': True,
        }],
    )
    joint_state_broadcaster = Node(
        package='controller_manager',
        executable='spawner',
        output='screen',
        arguments=['joint_state_broadcaster', '--controller-manager', '/controller_manager'],
    )
    effort_controller = Node(
        package='controller_manager',
        executable='spawner',
        output='screen',
        arguments=['effort_controller', '--param-file', controllers,
                   '--controller-manager', '/controller_manager'],
    )
    lnn_controller = Node(
        package='lnn_control',
        executable='lnn_controller',
        name='lnn_controller',
        output='screen',
        emulate_tty=True,
        parameters=[
            LaunchConfiguration('params_file'),
            {
                'use_sim_time': True,
                'reference.mode': LaunchConfiguration('reference_mode'),
            },
        ],
        remappings=[
            ('commands', '/effort_controller/commands'),
            ('joint_states', '/joint_states'),
        ],
    )

    return LaunchDescription([
        DeclareLaunchArgument(
            'gz_args', default_value=['-r -v 3 ', world],
            description='Arguments for gz sim (add -s for a headless server).'),
        DeclareLaunchArgument(
            'params_file', default_value=PathJoinSubstitution([share, 'config', 'pendulum.yaml']),
            description='lnn_controller parameter file.'),
        DeclareLaunchArgument(
            'reference_mode', default_value='sum_of_sines',
            choices=['topic', 'hold', 'sine', 'sum_of_sines', 'point_to_point'],
            description='Reference the controller tracks.'),
        gazebo,
        robot_state_publisher,
        clock_bridge,
        spawn,
        # Controllers once the robot (and with it the controller_manager) exists.
        RegisterEventHandler(OnProcessExit(target_action=spawn,
                                           on_exit=[joint_state_broadcaster])),
        RegisterEventHandler(OnProcessExit(target_action=joint_state_broadcaster,
                                           on_exit=[effort_controller])),
        lnn_controller,
    ])
