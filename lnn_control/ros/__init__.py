"""
ROS 2 adapters around the ROS-free core.

With ``lnn_control.tools``, the only place that imports rclpy.

* ``controller_node`` -- the ``lnn_controller`` node;
* ``sim_node``        -- the ``lnn_sim`` node (a MuJoCo plant behind ros2_control's topics);
* ``parameters``      -- declare a core schema as ROS parameters and validate changes;
* ``conversions``     -- JointState / Float64MultiArray / stamps <-> numpy, refusing bad
  input with a short reason key instead of raising;
* ``common``          -- what both nodes share: QoS profiles, diagnostics, executors and
  the ``main()`` runner.

Importing this package imports nothing heavy: the submodules pull in rclpy.
"""
import os


def isolate_domain(environ=os.environ, pid: int | None = None) -> None:
    """
    Keep a test or benchmark run's ROS traffic to itself.

    Discovery stays on this machine, and the run gets a ROS_DOMAIN_ID of its own (101..200,
    from the PID, unless one is set; ``make test`` sets 1..100). Call before rclpy is
    initialised.
    """
    environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    if not environ.get('ROS_DOMAIN_ID'):
        environ['ROS_DOMAIN_ID'] = str((os.getpid() if pid is None else pid) % 100 + 101)
