"""
Tools built on the ROS adapters: the closed-loop demo and the MCAP recorder.

``demo`` runs the closed-loop demo over ROS 2 (it starts and manages the simulator and
controller processes); ``recorder`` is the MCAP recorder of live topics. They import rclpy;
the analysis of what they record is ROS-free in the core (``lnn_control.recording``).
"""
