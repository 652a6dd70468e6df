"""Tools built on the ROS adapters: the closed-loop demo over ROS 2 (``demo``:
starts and manages the simulator and controller processes) and the MCAP
recorder of live topics (``recorder``). They import rclpy; the analysis of what
they record is ROS-free in the core (``lnn_control.recording``).
"""
