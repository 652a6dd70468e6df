"""Test-process set-up shared by the test modules.

ROS isolation: ``make test`` exports a per-run ROS_DOMAIN_ID; a bare
``pytest`` run gets one derived from its PID here (101..200, so it cannot
collide with make's 1..100), and discovery stays on this machine, so parallel
runs do not talk to each other. Set before any test imports rclpy, because the
domain is read when a context is initialised.
"""
import pytest

from lnn_control.ros import isolate_domain

isolate_domain()


@pytest.fixture
def context():
    """A ROS context of the test's own, so nodes of one test never outlive it."""
    import rclpy
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)
