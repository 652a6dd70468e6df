"""
The services of ``lnn_controller`` (a part of ``LnnControllerNode``).

``~/reset_learning``, ``~/set_learning``, ``~/plant_changed``, ``~/save_readout`` and
``~/load_readout``, and the readout save at shutdown.

``~/save_readout`` and ``~/load_readout`` answer once the file work is done, with its
outcome, without holding up the control loop for it: their callbacks are coroutines
that hand the work to the readout store's I/O thread (``ReadoutStore.save_request``,
``load_request``) and await it (``Answer``). They are in a callback group of their own:
in the node's default (mutually exclusive) group a waiting coroutine kept rclpy's
SingleThreadedExecutor from running the control timer (measured: no tick in 500 ms).
"""
from __future__ import annotations

import time
from typing import Optional

from rclpy.exceptions import InvalidHandle
from rclpy.parameter import Parameter

from . import common
from ..readout_file import Request

# How long the node stays after answering service calls at shutdown (see
# ``_answer_waiting_calls``); 5 turns of the EventsExecutor were not always enough.
ANSWER_SETTLE_S = 0.2


class Answer:
    """
    Await a ``Request`` in a service coroutine; its ``finish`` runs on the executor's thread.

    Each time the executor resumes the coroutine, it waits at most ``poll_s`` for the I/O
    thread: rclpy's EventsExecutor (Kilted) resumes a waiting coroutine again at once,
    which kept a core busy for the whole write (measured: about 15 000 resumptions per
    100 ms, and slower writes); the SingleThreadedExecutor resumes it when woken (the I/O
    thread calls ``executor.wake()``) or after another callback. A tick is held up at most
    ``poll_s`` by it.
    """

    def __init__(self, request: Request, poll_s: float, waiting: set):
        self._request, self._poll_s, self._waiting = request, poll_s, waiting

    def __await__(self):
        self._waiting.add(self)
        try:
            while not self._request.wait(self._poll_s):
                yield
        finally:
            self._waiting.discard(self)
        return self._request.finish()


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
        response.success = True
        response.message = ('covariances restarted: re-learning' if self.controller.learning_enabled
                            else 'covariances restarted: re-learning once learning is on '
                                 '(~/set_learning)')
        return response

    async def _srv_save_readout(self, request, response):
        """Snapshot now (between ticks), answer once the I/O thread wrote the file."""
        response.success, response.message = await self._answer(
            self.readout_store.save_request(self._wake_executor))
        if self.readout_store.path:
            common.log_outcome(self.get_logger(), response.success, response.message, 'error')
        return response

    async def _srv_load_readout(self, request, response):
        """
        Read and check the file on the I/O thread, then swap it in between ticks.

        On simulated time it is loaded at once, so that which tick first uses it depends on
        the order of the messages only, never on the disk: a lock-step simulator waits for
        the node anyway (what a save copies is taken at once on either clock).
        """
        if self.get_clock().ros_time_is_active:
            response.success, response.message = self.readout_store.load()
        else:
            response.success, response.message = await self._answer(
                self.readout_store.load_request(self._wake_executor))
        common.log_outcome(self.get_logger(), response.success, response.message)
        return response

    def _answer(self, request: Request) -> Answer:
        # a tenth of the control period at most: what a waiting coroutine may hold up a tick
        return Answer(request, min(1e-3, 0.1 * self.period_ns * 1e-9), self._waiting)

    def _answer_waiting_calls(self, timeout_s: float = 1.0) -> int:
        """
        Let service calls still waiting on the I/O thread answer; return how many are left.

        The spin loop has ended, so nothing would resume them and their clients would wait
        for ever. The I/O thread has finished (``ReadoutStore.close``) and the control timer
        is cancelled: only those coroutines (and arriving messages) run here.
        """
        executor = self.executor
        if not self._waiting or executor is None:
            return len(self._waiting)
        now = time.monotonic()
        deadline, answered = now + timeout_s, None
        # then a little longer: the EventsExecutor sends a finished coroutine's response in
        # a later turn, and the middleware needs a moment to deliver it before the node goes
        while now < deadline and (answered is None or now < answered + ANSWER_SETTLE_S):
            if answered is None and not self._waiting:
                answered = now
            try:
                executor.spin_once(timeout_sec=0.01)
            except (RuntimeError, InvalidHandle):   # the context shut down meanwhile
                break
            now = time.monotonic()
        return len(self._waiting)

    def _wake_executor(self) -> None:
        """Resume the waiting service coroutine promptly (called on the I/O thread)."""
        executor = self.executor
        if executor is not None:
            try:
                executor.wake()
            except InvalidHandle:     # shut down meanwhile: nothing left to answer
                pass

    def save_readout(self, log: bool = True) -> tuple[bool, str]:
        """Write the learned readout to ``readout_path`` atomically, now; (ok, message)."""
        ok, message = self.readout_store.save()
        if log and self.readout_store.path:
            common.log_outcome(self.get_logger(), ok, message, 'error')
        return ok, message

    def on_shutdown(self) -> Optional[tuple[Optional[bool], str]]:
        """
        Leave zero effort on ``commands``, then save the readout (``readout_path`` set).

        The control timer stops first. Service calls still waiting for their file work
        are answered (``_answer_waiting_calls``). The save lets learning survive a restart;
        not a doubtful readout (``ReadoutStore.doubtful``): the file keeps the last save.

        Does not log the save: the caller (``common.run_node``) logs the returned message
        once the spin loop has ended.
        """
        self.stop_ticking()             # no tick after the zero effort
        self.command_zero_effort()
        self.readout_store.close()
        left = self._answer_waiting_calls()
        if left:
            self.get_logger().warning(f'{left} readout service call(s) left unanswered at '
                                      'shutdown')
        return self.readout_store.save_at_shutdown() if self.readout_store.path else None
