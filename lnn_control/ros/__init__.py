"""ROS 2 adapters around the ROS-free core (the only place that imports rclpy).

* ``parameters``  -- declare a core schema as ROS parameters and validate changes;
* ``conversions`` -- JointState / Float64MultiArray <-> numpy, refusing bad input
  with a short reason key instead of raising;
* ``controller_node`` -- the ``lnn_controller`` node and its ``main``.

Importing this package imports nothing heavy: the submodules pull in rclpy.
"""
