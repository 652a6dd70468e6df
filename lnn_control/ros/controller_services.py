"""
The services of ``lnn_controller`` (a part of ``LnnControllerNode``).

``~/reset_learning``, ``~/set_learning``, ``~/plant_changed``, ``~/save_readout`` and
``~/load_readout``, and the readout save at shutdown.
"""
from __future__ import annotations

from typing import Optional

from rclpy.parameter import Parameter

from . import common


class ControllerServices:
    """Mixin: the service callbacks, on the node's controller and readout store."""

    def _srv_reset_learning(self, request, response):
        self.controller.reset_learning()
        response.success = True
        response.message = 'learned readout and automatic input scales reset'
        self.get_logger().info(response.message)
        return response

    def _srv_set_learning(self, request, response):
        # Through the parameter, so `ros2 param get ... learning_enabled` agrees.
        result = self.set_parameters([Parameter('learning_enabled', Parameter.Type.BOOL,
                                                bool(request.data))])[0]
        response.success = result.successful
        response.message = (f'learning {"on" if request.data else "off"}'
                            if result.successful else result.reason)
        return response

    def _srv_plant_changed(self, request, response):
        """
        Handle a user's report that the plant changed (tool change, grasp).

        The readouts re-learn fast at once instead of waiting for the detector.
        """
        self.controller.plant_changed('reported on ~/plant_changed')
        response.success, response.message = True, 'covariances restarted: re-learning'
        return response

    def _srv_save_readout(self, request, response):
        response.success, response.message = self.save_readout()
        return response

    def _srv_load_readout(self, request, response):
        response.success, response.message = self.readout_store.load()
        if response.success:
            self.get_logger().info(response.message)
        return response

    def save_readout(self, log: bool = True) -> tuple[bool, str]:
        """Write the learned readout to ``readout_path`` atomically; (ok, message)."""
        ok, message = self.readout_store.save()
        if log and self.readout_store.path:
            common.log_outcome(self.get_logger(), ok, message, 'error')
        return ok, message

    def on_shutdown(self) -> Optional[tuple[bool, str]]:
        """
        Leave zero effort on ``commands``, then save the readout (``readout_path`` set).

        The save lets learning survive a restart; not a doubtful readout
        (``ReadoutStore.doubtful``): the file keeps the last save.

        Does not log the save: the caller (``common.run_node``) logs the returned message
        once the spin loop has ended.
        """
        self.command_zero_effort()
        self.readout_store.close()
        return self.readout_store.save_at_shutdown() if self.readout_store.path else None
