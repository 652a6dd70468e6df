"""
The learning supervisor on real plants.

It must catch a harmful readout, recover to PD-or-better within seconds, count
what it did, and leave good learning alone.
"""
from lnn_control import closed_loop as CL
from lnn_control import control_kernels as CK
from lnn_control import zoo
from lnn_control.controller import AdaptiveController
from lnn_control.plants import Plant
from lnn_control.trajectories import make_reference
import numpy as np
import pytest

pytestmark = pytest.mark.unit


def _loop(ctrl, plant_name, duration, inject_at=None, factor=-10.0, before_tick=None,
          commands=None):
    """
    Run ``ctrl`` on a fresh ``plant_name``; return the RMS error per tick.

    ``before_tick(k, ctrl)`` is called before tick k; ``commands`` (ticks x joints), if
    given, receives the commands.
    """
    plant = Plant(plant_name, joints=ctrl.joints)
    cfg = ctrl.params
    ref = make_reference('sum_of_sines', ctrl.n, cfg['reference.amplitude'],
                         cfg['reference.frequency_hz'], cfg['reference.offset'])
    q_d, qd_d, qdd_d = (np.zeros(ctrl.n) for _ in range(3))
    ref.sample(0.0, q_d, qd_d, qdd_d)
    plant.reset(q=q_d)
    err = np.zeros(int(round(duration / ctrl.dt)))
    inject_at = () if inject_at is None else np.atleast_1d(inject_at)
    for k in range(err.size):
        t = k * ctrl.dt
        if any(abs(t - when) < ctrl.dt / 2 for when in inject_at):
            for r in ctrl.readouts():
                r.w *= factor           # a corrupted readout, as a bad file would give
        if before_tick is not None:
            before_tick(k, ctrl)
        ref.sample(t, q_d, qd_d, qdd_d)
        q, qd = plant.position(), plant.velocity()
        err[k] = np.sqrt(np.mean((q_d - q) ** 2))
        command = ctrl.step((q, qd), (q_d, qd_d, qdd_d))
        if commands is not None:
            commands[k] = command
        plant.step(command, ctrl.dt)
    return err


def _rms(err, dt, a, b):
    return float(np.sqrt(np.mean(err[int(a / dt):int(b / dt)] ** 2)))


@pytest.mark.slow
@pytest.mark.parametrize('plant', ['pendulum_heavy_coulomb', 'arm_geared'])
def test_injected_bad_readout_is_detected_rolled_back_and_counted(plant):
    params = zoo.controller_params(plant)
    pd = AdaptiveController({**params, 'learning_enabled': False})
    err_pd = _loop(pd, zoo.model_name(plant), 30.0)
    ctrl = AdaptiveController(params)
    err = _loop(ctrl, zoo.model_name(plant), 30.0, inject_at=20.0)
    sv = ctrl.supervisor
    events = [(e.time_s, e.action) for e in sv.interventions]
    assert sv.counts['rollback'] >= 1, events
    first = next(t for t, a in events if a == 'rollback')
    assert 20.0 < first < 21.0, events                 # detected within a second
    dt = ctrl.dt
    # within a few seconds back to no worse than 1.2x PD, and it stays there
    assert _rms(err, dt, 23.0, 30.0) <= 1.2 * _rms(err_pd, dt, 23.0, 30.0)
    assert _rms(err, dt, 10.0, 20.0) <= 0.2 * _rms(err_pd, dt, 10.0, 20.0)   # learned first


def test_good_learning_is_left_alone():
    params = zoo.controller_params('pendulum_viscous')
    ctrl = AdaptiveController(params)
    _loop(ctrl, zoo.model_name('pendulum_viscous'), 30.0)
    assert ctrl.supervisor.interventions == []
    assert ctrl.supervisor.state == 'learning' and ctrl.supervisor.ratio < 0.3


def test_a_pd_only_hold_keeps_a_frozen_readout_and_applies_it_again():
    """
    Learning off: the hold zeroes the feedforward, not the readout (it zeroed the weights).

    A readout judged harmful while learning is on restarts from zero; one frozen by the
    user is theirs: unused during the hold, applied again after it.
    """
    name = 'pendulum_viscous'
    ctrl = AdaptiveController(zoo.controller_params(name))
    _loop(ctrl, zoo.model_name(name), 10.0)
    ctrl.update_params({'learning_enabled': False})
    weights = [r.w.copy() for r in ctrl.readouts()]
    ctrl.supervisor._pd_only('injected')
    _loop(ctrl, zoo.model_name(name), 0.5)
    assert ctrl.supervisor.state == 'pd_only'
    assert not ctrl.tick_terms()[3].any()               # the feedforward unused
    _loop(ctrl, zoo.model_name(name), ctrl.supervisor.hold_s + 1.0)
    last = ctrl.supervisor.interventions[-1]
    assert last.action == 'resume' and 'frozen readout applies again' in last.reason, last
    for before, r in zip(weights, ctrl.readouts()):
        np.testing.assert_array_equal(r.w, before)
    assert ctrl.tick_terms()[3].any()


@pytest.mark.parametrize('learning', [True, False])
def test_limits_lowered_below_the_motions_need_leave_the_learned_readout(learning):
    """
    A command_limit lowered live below the peak the motion needs is the limit's saturation.

    Counted against the feedforward it set off rollback, PD only and a restart from zero:
    the learned weights were wiped (learning on or off). Now the push figure judges only
    saturation beyond the base the readout that met the old limit reads under the new one,
    rho skips the ticks at the limit, and a PD-only hold keeps the readout: the error is
    the supervisor-off run's (PD's too: the limit decides it).
    """
    name = 'pendulum_5kg'
    params = zoo.controller_params(name)
    change, weights, results = 1500, [], {}       # at 15 s

    def lower_the_limit(k, ctrl):
        if k == change:
            if not learning:
                ctrl.update_params({'learning_enabled': False})
            weights.append(np.abs(ctrl.slow.w).sum())
            peak = np.abs(commands[change - 500:change]).max()     # over the last 5 s
            ctrl.update_params({'command_limit': [0.85 * peak]})

    for supervised in (True, False):
        ctrl = AdaptiveController({**params, 'supervisor.enabled': supervised})
        assert ctrl.dt == 0.01
        commands = np.zeros((3000, ctrl.n))
        err = _loop(ctrl, zoo.model_name(name), 30.0, before_tick=lower_the_limit,
                    commands=commands)
        results[supervised] = (_rms(err, ctrl.dt, 20.0, 30.0), ctrl)
    err, ctrl = results[True]
    sv = ctrl.supervisor
    assert np.abs(ctrl.slow.w).sum() > 0.5 * weights[0], sv.interventions
    assert 0.5 < sv.push_base <= 1.0 - CK.SV_PUSH_TRIP      # measured
    assert ctrl.saturated_ticks > 0
    assert err <= 1.05 * results[False][0]


def test_a_feedforward_switched_off_is_not_a_feedforward_at_its_bound():
    """feedforward_limit 0 clipped every tick: the supervisor wiped the readout for it."""
    from lnn_control import control_kernels as CK
    out = np.zeros(2)
    ff = np.array([0.3, -0.2])
    excess = np.zeros(2)
    assert CK.bounded_command(np.array([0.1, 0.1]), ff, np.zeros(2), np.ones(2), out,
                              excess) == 0
    assert not ff.any()
    np.testing.assert_array_equal(excess, [0.3, -0.2])       # what the readout predicted
    ff = np.array([0.3, -0.2])
    assert CK.bounded_command(np.array([0.1, 0.1]), ff, np.full(2, 0.25), np.ones(2), out,
                              excess) == 1
    np.testing.assert_allclose(excess, [0.05, 0.0])


@pytest.mark.slow
def test_trips_cap_the_fast_learner_then_switch_it_off_then_cut_every_gain(tmp_path):
    """
    The fast learner is the first suspect: a first trip caps the gains, a second switches it off.

    A third cuts the slow learner too. Switched off, it supplies nothing and learns
    nothing. The cuts are learned state: they survive a save and load, and
    reset_learning lifts them.
    """
    ctrl = AdaptiveController(zoo.controller_params('pendulum_viscous'))
    sv = ctrl.supervisor
    _loop(ctrl, zoo.model_name('pendulum_viscous'), 9.0, inject_at=6.0)
    assert [e.action for e in sv.interventions] == ['rollback', 'resume'], sv.interventions
    cap = sv.gain_cap_per_step                       # GAIN_CAP x kp/kd x dt
    assert 0.0 < cap < 1.0 and f'gain capped at {cap:.3g}' in sv.interventions[0].reason
    assert ctrl.fast.gain_cap == ctrl.slow.gain_cap == cap and ctrl.fast_active
    assert sv.readout_gains() == (1.0, 1.0)
    _loop(ctrl, zoo.model_name('pendulum_viscous'), 4.0, inject_at=2.0)
    rollbacks = [e.reason for e in sv.interventions if e.action == 'rollback']
    assert len(rollbacks) == 2 and 'fast learner switched off' in rollbacks[1], rollbacks
    assert sv.readout_gains() == (1.0, 0.0) and not ctrl.fast_active
    updates = ctrl.fast.updates
    _loop(ctrl, zoo.model_name('pendulum_viscous'), 4.0, inject_at=2.0)
    assert ctrl.fast.updates == updates and not ctrl.fast.w.any()
    assert not ctrl._ff_fast.any()
    rollbacks = [e.reason for e in sv.interventions if e.action == 'rollback']
    assert len(rollbacks) == 3 and 'adaptation gain now x0.1' in rollbacks[2], rollbacks
    assert sv.readout_gains() == pytest.approx((0.1, 0.0))
    ctrl.save(str(tmp_path / 'readout.npz'))
    other = AdaptiveController(zoo.controller_params('pendulum_viscous'))
    other.load(str(tmp_path / 'readout.npz'))
    assert other.supervisor.readout_gains() == pytest.approx((0.1, 0.0))
    assert other.supervisor.gain_capped and other.slow.gain_cap == cap
    assert not other.fast_active
    other.reset_learning()
    assert other.supervisor.readout_gains() == (1.0, 1.0) and other.fast_active
    assert not other.supervisor.gain_capped and other.slow.gain_cap == 0.0


def test_in_inverse_model_mode_the_first_trip_switches_the_fast_learner_off():
    """There it reads the measured state: a gain cap would not bound its output's feedback."""
    for mode, capped in (('feedback_error', True), ('inverse_model', False)):
        ctrl = AdaptiveController({**zoo.controller_params('pendulum_viscous'),
                                   'controller.mode': mode})
        ctrl.supervisor._rollback('injected by the test')
        assert ctrl.supervisor.gain_capped is capped and ctrl.fast_active is capped, mode
        assert (ctrl.slow.gain_cap > 0.0) is capped, mode


def test_supervisor_off_means_no_interventions():
    params = {**zoo.controller_params('arm_geared'), 'supervisor.enabled': False}
    ctrl = AdaptiveController(params)
    _loop(ctrl, zoo.model_name('arm_geared'), 12.0, inject_at=6.0)
    assert ctrl.supervisor.interventions == []


@pytest.mark.slow
def test_payload_change_is_not_taken_for_a_divergence():
    """
    After the payload doubles, rho rises towards 1 but the learners are left to re-adapt.

    No rollback on the bundled pendulum.
    """
    params = CL.plant_params('pendulum')
    trace = CL.run('pendulum', params, 50.0, payload_change_at=30.0)
    assert [e for e in trace.meta['interventions'] if e[1] != 'resume'] == []


@pytest.mark.slow
def test_summary_and_figure_report_interventions(tmp_path):
    from lnn_control.plotting import tracking_figure

    params = {**zoo.controller_params('arm_friction'), 'rls.initial_covariance': 100.0}
    pd = CL.run(zoo.model_name('arm_friction'), params, 20.0, learning=False)
    ad = CL.run(zoo.model_name('arm_friction'), params, 20.0)
    summary = CL.report('offline', 'zoo/arm_friction', 'esn', 0, pd, ad, 20.0, None)
    assert summary['supervisor']['interventions'] >= 1
    assert summary['supervisor']['events'][0]['action'] == 'rollback'
    path = tmp_path / 'tracking.png'
    tracking_figure([pd, ad], str(path))
    assert path.stat().st_size > 10_000


@pytest.mark.slow
def test_repeated_pd_only_backs_off(monkeypatch):
    """
    PD-only holds double: arm_friction with a tick of delay, its PD output kept at full gains.

    Its PD loop itself limit-cycles, feedforward cannot help, and each retry costs bad
    seconds (worst 10 s window 1.50x PD: the PD and adaptive arms settle into limit cycles
    of different amplitude; 1.48x before the first trip cut only the fast learner). (With
    the defaults the supervisor keeps the PD output softer after the second hold and the
    arm learns: see the next tests.)
    """
    from lnn_control import supervisor
    monkeypatch.setattr(supervisor, 'DETUNE_FACTOR', 1.0)
    row = zoo.run_member(('arm_friction', 'delay', 0, {}))
    holds = [reason for _, action, reason in row['intervention_log'] if action == 'pd_only']
    assert len(holds) >= 3, row['intervention_log']
    assert 'for 2 s' in holds[0] and 'for 4 s' in holds[1] and 'for 8 s' in holds[2], holds
    assert row['ratio'] <= 1.0 and row['worst_window_ratio'] <= 1.55, row


def test_a_pd_only_controller_has_nothing_for_the_supervisor_to_judge():
    """Learning off and nothing learned: PD saturating on its own is not an intervention."""
    params = CL.plant_params('pendulum')
    ctrl = AdaptiveController({**params, 'learning_enabled': False,
                               'command_limit': [0.3]})   # 1.5 % of its own
    _loop(ctrl, 'pendulum', 6.0)
    assert ctrl.saturated_ticks > 50                  # PD alone hit the limit, often
    assert ctrl.supervisor.interventions == [] and ctrl.supervisor.state == 'learning'


def test_supervise_kernel_trips_snapshots_and_resumes_on_its_timers():
    """The per-tick kernel's decisions, one joint, window 10 ticks, hold 30."""
    from lnn_control import control_kernels as CK
    st = np.zeros(CK.SV_SIZE)
    st[CK.SV_ALPHA], st[CK.SV_TRIP], st[CK.SV_WINDOW], st[CK.SV_HOLD] = 0.1, 1.1, 10, 30
    st[CK.SV_HOLD_FACTOR] = 2
    gains, lp = np.array([[10.0], [0.1], [1.0]]), np.zeros((6, 1))
    one = np.ones(1)

    def run(pd, ff, ticks, refused=False):
        codes = []
        for _ in range(ticks):
            codes.append(CK.supervise(pd, ff, pd + ff, gains, lp, 0, refused, st))
            if codes[-1] == CK.SV_SNAPSHOT:
                st[CK.SV_INTERVAL] = 0.0        # what LearningSupervisor._take_snapshot does
        return codes

    # Learning that halves the PD effort: good, a snapshot every two windows.
    codes = run(0.5 * one, 0.5 * one, 40)
    assert [k for k, c in enumerate(codes) if c] == [19, 39]
    assert all(c == CK.SV_SNAPSHOT for c in codes if c)
    assert st[CK.SV_RHO] == pytest.approx(0.5, rel=1e-3)     # (the effort floor adds 1e-4)
    # A feedforward against the PD loop: rho 2, a rollback once it has a full window.
    st[:CK.SV_CLEARED] = 0.0
    codes = run(2.0 * one, -1.0 * one, 10)
    assert codes[:9] == [0] * 9 and codes[9] == CK.SV_ROLLBACK
    assert st[CK.SV_WHY] == CK.SV_WHY_RHO
    # Grossly harmful (rho 5, over twice the trip ratio): judged after a quarter window.
    st[:CK.SV_CLEARED] = 0.0
    codes = run(5.0 * one, -4.0 * one, 3)
    assert codes[:2] == [0, 0] and codes[2] == CK.SV_ROLLBACK
    # A feedforward pushing a saturated command: judged after a quarter window already.
    st[:CK.SV_CLEARED] = 0.0
    limit = 10.0 * one
    codes = [CK.supervise(2.0 * one, 9.0 * one, limit, gains, lp, 1, False, st)
             for _ in range(3)]
    assert codes[:2] == [0, 0] and codes[2] == CK.SV_ROLLBACK
    assert st[CK.SV_WHY] == CK.SV_WHY_PUSH
    # ... only beyond the push fraction the limits alone cause (the base, see
    # LearningSupervisor.limits_changed): pushing every other tick over a base of 0.5 is
    # not (the quarter-window average swings 0.29-0.71), every tick is.
    st[:CK.SV_CLEARED], st[CK.SV_PUSH_BASE] = 0.0, 0.5
    codes = [CK.supervise(2.0 * one, 9.0 * one, limit * (0.5 + 0.5 * (k % 2)), gains, lp, 0,
                          False, st) for k in range(40)]
    assert CK.SV_ROLLBACK not in codes and 0.25 < st[CK.SV_PUSH] < 0.75
    codes = [CK.supervise(2.0 * one, 9.0 * one, limit, gains, lp, 1, False, st)
             for _ in range(10)]
    assert CK.SV_ROLLBACK in codes and st[CK.SV_WHY] == CK.SV_WHY_PUSH
    st[CK.SV_PUSH_BASE] = 0.0
    # A refused RLS step rolls back at once, whatever rho says.
    st[:CK.SV_CLEARED] = 0.0
    assert run(0.5 * one, 0.5 * one, 1, refused=True) == [CK.SV_ROLLBACK]
    # Frozen: harmful again -> PD only; good -> resume after the hold.
    st[:CK.SV_CLEARED], st[CK.SV_STATE] = 0.0, 1
    assert run(2.0 * one, -1.0 * one, 10)[-1] == CK.SV_TO_PD_ONLY
    st[:CK.SV_CLEARED] = 0.0
    codes = run(0.5 * one, 0.5 * one, 30)
    assert codes[:29] == [0] * 29 and codes[29] == CK.SV_RESUME
    # PD only: the hold times the backoff factor, whatever rho reads.
    st[:CK.SV_CLEARED], st[CK.SV_STATE] = 0.0, 2
    codes = run(2.0 * one, -1.0 * one, 60)
    assert codes[:59] == [0] * 59 and codes[59] == CK.SV_RESUME


def test_supervise_kernel_judges_the_echo_only_once_armed():
    """
    A feedforward chattering above the loop's bandwidth trips once learning is armed.

    Per tick: PD effort +-0.4, feedforward 0.2 +- 0.6 in phase. rho reads 0.4 (the
    command is large), but the feedforward's power above the bandwidth is ~3x the
    command's within it: a self-excited oscillation, not a model of the motion.
    """
    from lnn_control import control_kernels as CK
    st = np.zeros(CK.SV_SIZE)
    st[CK.SV_ALPHA], st[CK.SV_TRIP], st[CK.SV_WINDOW], st[CK.SV_HOLD] = 0.1, 1.1, 10, 30
    gains, lp = np.array([[10.0], [0.1], [0.1]]), np.zeros((6, 1))

    def run(ticks):
        codes = []
        for k in range(ticks):
            sign = 1.0 if k % 2 else -1.0
            pd, ff = np.array([0.4 * sign]), np.array([0.2 + 0.6 * sign])
            codes.append(CK.supervise(pd, ff, pd + ff, gains, lp, 0, False, st))
        return codes

    assert not any(c == CK.SV_ROLLBACK for c in run(40))     # not armed: left alone
    assert st[CK.SV_RHO] < 0.5 and st[CK.SV_ECHO] > 2.0
    st[:CK.SV_CLEARED], lp[:] = 0.0, 0.0
    st[CK.SV_ARMED] = 1.0
    codes = run(10)
    assert codes[:9] == [0] * 9 and codes[9] == CK.SV_ROLLBACK
    assert st[CK.SV_WHY] == CK.SV_WHY_ECHO


def test_supervise_kernel_measures_a_command_flipping_sign_every_tick():
    """The command's lag-1 correlation, per joint: -1 chattering, near +1 tracking."""
    from lnn_control import control_kernels as CK
    st = np.zeros(CK.SV_SIZE)
    st[CK.SV_ALPHA], st[CK.SV_TRIP], st[CK.SV_WINDOW], st[CK.SV_HOLD] = 0.1, 1.1, 10, 30
    gains, lp = np.array([[10.0, 10.0], [0.1, 0.1], [0.1, 0.1]]), np.zeros((6, 2))
    for k in range(100):
        command = np.array([np.sin(0.05 * k), 2.0 * (-1.0) ** k])   # smooth, chattering
        CK.supervise(0.5 * command, 0.5 * command, command, gains, lp, 0, False, st)
    assert st[CK.SV_CHATTER] < -0.99 and st[CK.SV_CHATTER_JOINT] == 1
    for k in range(100):
        command = np.array([np.sin(0.05 * k), np.cos(0.05 * k)])
        CK.supervise(0.5 * command, 0.5 * command, command, gains, lp, 0, False, st)
    assert st[CK.SV_CHATTER] > 0.9


def test_saturating_start_up_with_a_tick_of_delay_is_cut_short():
    """
    Step in within 0.5 s when a tick of delay makes the first learning steps saturate.

    With a tick of actuation delay the first learning steps push a 2-link arm's command
    into its limit within 0.3 s; the push fraction is judged after a quarter window, so
    the supervisor steps in then, not after its first full window (which had left the arm
    saturated for most of its first second at 2.3x PD's error over the first 3 s).
    """
    params = {**zoo.controller_params('arm_heavy_base'), 'reservoir.seed': 0,
              'reference.seed': 0}
    pd, adaptive = (CL.run(zoo.model_name('arm_heavy_base'), params, 3.0, learning=learning,
                           delay_ticks=1) for learning in (False, True))
    first = adaptive.meta['interventions'][0]
    assert first[1] == 'rollback' and first[0] < 0.5, first
    assert 'into its limit' in first[2]
    assert CL.rms(adaptive, 0.0, 3.0) <= 1.5 * CL.rms(pd, 0.0, 3.0)


@pytest.mark.parametrize('ease', [True, False])
def test_a_pd_loop_kicked_into_a_cycle_at_its_limits_is_eased_out_of_it(monkeypatch, ease):
    """
    A random arm whose PD loop, with a tick of delay, is bistable (zoo random_3_40).

    The first learning steps kick it into a cycle at its limits; a quarter window into
    the frozen hold that follows the rollback the supervisor eases the PD output for a
    moment and the arm leaves the cycle. Without the easing (EASE_GAIN 1, and no kept
    detuning either) it stays in it through the PD-only hold that follows.
    """
    from lnn_control import supervisor
    if not ease:
        monkeypatch.setattr(supervisor, 'EASE_GAIN', 1.0)
        monkeypatch.setattr(supervisor, 'DETUNE_FACTOR', 1.0)
    params = {**zoo.controller_params('random_3_40'), 'reservoir.seed': 0,
              'reference.seed': 0}
    run = CL.run(zoo.model_name('random_3_40'), params, 3.2, delay_ticks=1)
    actions = [action for _, action, _ in run.meta['interventions']]
    assert actions[:3] == ['rollback', 'pd_eased', 'pd_only'], run.meta['interventions']
    rollback, eased = run.meta['interventions'][:2]
    assert eased[0] - rollback[0] <= 0.3 and 'learning frozen' in eased[2]
    limit = np.asarray(params['command_limit'])
    late_hold = np.abs(run.command[int(2.4 / 0.01):int(3.2 / 0.01)]) >= 0.999 * limit
    assert late_hold.any(axis=1).mean() < 0.02 if ease else late_hold.any(axis=1).mean() > 0.3


@pytest.mark.slow
def test_the_easing_lasts_until_the_cycle_has_died():
    """
    A heavy-tip arm tracking a small reference (x0.1), a tick of delay: bistable PD.

    The first learning steps kick it into the cycle at its limits. Eased 0.2 s and
    restored over 0.5 s it fell back in as the gain came back and stayed there (PD
    only, 17-23x PD's error over every 10 s window); eased long enough it leaves.
    """
    name = 'arm_heavy_tip'
    params = {**zoo.controller_params(name, {'amplitude_scale': 0.1}),
              'reservoir.seed': 0, 'reference.seed': 0}
    pd, adaptive = (CL.run(zoo.model_name(name), params, 20.0, learning=learning,
                           delay_ticks=1) for learning in (False, True))
    assert 'pd_eased' in [action for _, action, _ in adaptive.meta['interventions']]
    assert CL.worst_window_ratio(pd, adaptive) <= 1.2


def test_the_pd_easing_schedule_and_its_end_when_the_supervisor_is_switched_off():
    """
    EASE_GAIN for EASE_HOLD_S, back to full over EASE_RAMP_S; never left half-way.

    It ends at once when the supervisor or learning is switched off, or learning resumes.
    """
    from lnn_control import supervisor as S
    ctrl = AdaptiveController({**zoo.controller_params('random_3_40'),
                               'learning_enabled': False})
    sv, per_s = ctrl.supervisor, round(1.0 / ctrl.dt)
    start = ctrl.ticks
    sv._ease_tick = start                        # as a PD-only hold at its limits sets it
    q, zero = np.array([0.1, -0.2]), np.zeros(2)
    pd = ctrl.kp * (zero - q)
    np.testing.assert_allclose(ctrl.step((q, zero), (zero, zero, zero)), S.EASE_GAIN * pd)
    assert sv.pd_scale(start + int(S.EASE_HOLD_S * per_s)) == S.EASE_GAIN
    middle = start + int((S.EASE_HOLD_S + S.EASE_RAMP_S / 2) * per_s)
    assert sv.pd_scale(middle) == pytest.approx((1.0 + S.EASE_GAIN) / 2)
    assert sv.easing
    assert sv.pd_scale(start + int((S.EASE_HOLD_S + S.EASE_RAMP_S) * per_s) + 1) == 1.0
    assert not sv.easing
    np.testing.assert_allclose(ctrl.step((q, zero), (zero, zero, zero)), pd)
    sv._ease_tick = ctrl.ticks
    ctrl.update_params({'supervisor.enabled': False})
    np.testing.assert_allclose(ctrl.step((q, zero), (zero, zero, zero)), pd)
    assert not sv.easing
    ctrl.update_params({'supervisor.enabled': True, 'learning_enabled': True})
    sv._ease_tick = ctrl.ticks
    sv._resume('test')                    # learning resumes on the full PD output
    assert not sv.easing
    sv._ease_tick = ctrl.ticks
    ctrl.update_params({'learning_enabled': False})     # learning off: plain PD at once
    assert not sv.easing


def test_a_pd_loop_that_falls_back_into_its_cycle_is_kept_softer_until_the_user_acts():
    """
    A second easing within DETUNE_WITHIN_S of the first keeps the PD output scaled.

    One easing is a kick out of a cycle; the cycle back soon after says the gains are
    unstable on this plant. Down by DETUNE_FACTOR per recurrence to DETUNE_MIN; full
    gains again when kp or kd is set, learning or the supervisor is switched off, or
    learning is reset -- each logged as pd_restored.
    """
    from lnn_control import supervisor as S
    ctrl = AdaptiveController(zoo.controller_params('random_3_40'))
    sv, per_s = ctrl.supervisor, round(1.0 / ctrl.dt)
    q, zero = np.array([0.1, -0.2]), np.zeros(2)
    pd = ctrl.kp * (zero - q)
    sv._detune_if_recurring()
    assert sv.pd_gain == 1.0                       # once: a kick, no verdict
    ctrl.ticks += int((S.DETUNE_WITHIN_S + 1) * per_s)
    sv._detune_if_recurring()
    assert sv.pd_gain == 1.0                       # too long after the first to count
    ctrl.ticks += 3 * per_s
    sv._detune_if_recurring()
    assert sv.pd_gain == pytest.approx(S.DETUNE_FACTOR)
    assert sv.interventions[-1].action == 'pd_detuned'
    assert 'unstable on this plant' in sv.interventions[-1].reason
    np.testing.assert_allclose(ctrl.step((q, zero), (zero, zero, zero)),
                               S.DETUNE_FACTOR * pd)   # (nothing learned yet: PD alone)
    for _ in range(10):
        ctrl.ticks += per_s
        sv._detune_if_recurring()
    assert sv.pd_gain == S.DETUNE_MIN
    for change, then in ((lambda: ctrl.update_params({'kp': list(1.01 * ctrl.kp)}), None),
                         (lambda: ctrl.update_params({'learning_enabled': False}),
                          lambda: ctrl.update_params({'learning_enabled': True})),
                         (lambda: ctrl.update_params({'supervisor.enabled': False}),
                          lambda: ctrl.update_params({'supervisor.enabled': True})),
                         (ctrl.reset_learning, None)):
        sv.detune = 0.5
        change()
        assert sv.pd_gain == 1.0
        np.testing.assert_allclose(ctrl.step((q, zero), (zero, zero, zero)),
                                   ctrl.kp * (zero - q) + ctrl.tick_terms()[3])
        if then is not None:
            then()
    assert [i.action for i in sv.interventions].count('pd_restored') == 3   # (reset: silent)
    sv.detune = 0.5
    ctrl.update_params({'kp': list(ctrl.kp), 'kd': list(ctrl.kd)})   # the same gains again
    assert sv.pd_gain == 0.5
    ctrl.update_params({'learning_enabled': False})
    assert sv.pd_gain == 1.0                # learning off: PD at full gains, and it stays so
    sv._detune_if_recurring()
    ctrl.ticks += per_s
    sv._detune_if_recurring()
    assert sv.detune == 1.0 and sv.pd_gain == 1.0


def test_detuning_gives_back_a_step_of_the_adaptation_gain_the_cycling_loop_cost():
    """
    The trips of a PD loop that cycles were partly its own doing, not the learners'.

    Their cuts (x0.01 after two) had left re-adaptation that slow for good (arms with
    a tick of delay: 0.6-0.8x PD after payload x2). Each detuning gives back one cut
    (not all: a merely bistable loop was kicked again), restarts the covariances and
    keeps the weights; never above what the initial covariance allows.
    """
    from lnn_control import supervisor as S
    ctrl = AdaptiveController(zoo.controller_params('random_3_40'))
    sv, per_s = ctrl.supervisor, round(1.0 / ctrl.dt)
    for r in ctrl.readouts():
        r.w[:] = 0.01
        r.p *= 1e-3                                   # a covariance that learning shrank
    sv.gain_scale = S.GAIN_CUT ** 2
    sv._detune_if_recurring()
    assert sv.gain_scale == pytest.approx(S.GAIN_CUT ** 2)   # one easing: no verdict
    ctrl.ticks += per_s
    sv._detune_if_recurring()
    assert sv.pd_gain == pytest.approx(S.DETUNE_FACTOR)
    assert sv.gain_scale == pytest.approx(S.GAIN_CUT)
    assert 'adaptation gain back up to x0.1' in sv.interventions[-1].reason
    fresh = AdaptiveController(zoo.controller_params('random_3_40'))
    for r, new in zip(ctrl.readouts(), fresh.readouts()):
        np.testing.assert_allclose(r.p, S.GAIN_CUT * new.p)   # restarted at the new gain
        assert np.all(r.w == 0.01)                   # what was learned is kept
    for _ in range(2):
        ctrl.ticks += per_s
        sv._detune_if_recurring()                     # each recurrence: one step more
    assert sv.gain_scale == 1.0                       # up to full gain, not beyond
    big = AdaptiveController({**zoo.controller_params('random_3_40'),
                              'rls.initial_covariance': 1e4})
    big.supervisor.gain_scale = 1e-3
    for _ in range(3):
        big.supervisor._detune_if_recurring()
        big.ticks += per_s
    assert big.supervisor.gain_scale == pytest.approx(S.VALIDATED_COVARIANCE / 1e4)


def test_a_trial_of_more_pd_gain_ends_at_the_first_sign_of_the_cycle():
    """
    Try one step more PD gain after PROBE_AFTER_S, for PROBE_S.

    The command at its limit (or a trip) ends the trial at once: back down, eased, the
    wait doubled, no rollback. A trial that holds keeps the gain and tries the next step
    after the first wait.
    """
    from lnn_control import supervisor as S
    ctrl = AdaptiveController(zoo.controller_params('random_3_40'))
    sv, per_s = ctrl.supervisor, round(1.0 / ctrl.dt)
    sv._detune_if_recurring()
    ctrl.ticks += per_s
    sv._detune_if_recurring()
    sv._detune_if_recurring()                      # 0.49
    ctrl.ticks += int(S.PROBE_AFTER_S[0] * per_s)
    assert not sv._worse_than_full_gains(ctrl.ticks)   # no statistics yet: rho reads 1
    sv._trial()
    assert sv.pd_gain == pytest.approx(S.DETUNE_FACTOR)
    assert sv.interventions[-1].action == 'pd_restored'
    ctrl._saturated = True                         # (as act sets it) the cycle again
    for _ in range(per_s):
        sv._trial()
        ctrl.ticks += 1
        if sv.pd_gain < S.DETUNE_FACTOR:
            break
    assert sv.pd_gain == pytest.approx(S.DETUNE_FACTOR ** 2)
    last = sv.interventions[-1]
    assert last.action == 'pd_detuned' and 'on the trial' in last.reason
    assert sv.easing and sv.state == 'learning'
    assert ctrl.ticks < int((S.DETUNE_WITHIN_S + S.PROBE_AFTER_S[0]) * per_s)   # within the window
    ctrl._saturated = False
    ctrl.ticks += int(2 * S.PROBE_AFTER_S[0] * per_s)   # the doubled wait
    sv.stop_easing()
    sv._trial()
    assert sv.pd_gain == pytest.approx(S.DETUNE_FACTOR)
    ctrl.ticks += int(S.PROBE_S * per_s)
    sv._trial()                                    # it held
    ctrl.ticks += int(S.PROBE_AFTER_S[0] * per_s)
    sv._trial()
    assert sv.pd_gain == 1.0
    assert [i.action for i in sv.interventions].count('rollback') == 0


def test_a_trip_while_a_failed_trials_cycle_dies_out_cuts_no_gain():
    """
    The trial's cycle at more PD gain is the loop's doing, not the learners'.

    A trip in its easing and a quarter window after rolls back and freezes, without a
    cut (cut, the fast learner went off after the first failed trial, and the arms
    with delay re-adapted to 0.40-0.60x PD after payload x2 instead of 0.18-0.33x).
    A trip after that wake gets the full response.
    """
    from lnn_control import supervisor as S
    ctrl = AdaptiveController(zoo.controller_params('random_3_40'))
    sv, per_s = ctrl.supervisor, round(1.0 / ctrl.dt)
    sv._detune_if_recurring()
    ctrl.ticks += per_s
    sv._detune_if_recurring()
    sv._rollback('before any trial')                  # a trip: the first cut (the cap)
    assert sv.gain_capped
    sv._resume('test')                                # (the snapshot: zero weights)
    for r in ctrl.readouts():
        r.w[:] = 0.02                                 # learned since the snapshot
    ctrl.ticks += int(S.PROBE_AFTER_S[0] * per_s)
    sv._trial()
    assert sv.interventions[-1].action == 'pd_restored'
    sv._trial_failed('command at its limit 40% of the time')
    before = (sv.gain_scale, sv.fast_cut, sv.gain_capped)
    ctrl.ticks += per_s
    sv._rollback('feedforward drove the command into its limit 30% of the time')
    assert (sv.gain_scale, sv.fast_cut, sv.gain_capped) == before
    assert sv.state == 'frozen' and 'no cut' in sv.interventions[-1].reason
    assert all(not r.w.any() for r in ctrl.readouts())     # back to the snapshot (zero)
    sv._resume('test')
    ctrl.ticks += int((S.EASE_HOLD_S + S.EASE_RAMP_S + sv.window_s) * per_s)
    sv._rollback('feedforward drove the command into its limit 30% of the time')
    assert sv.fast_cut == 0.0                         # the second cut: fast learner off
    assert 'fast learner switched off' in sv.interventions[-1].reason


def test_the_wake_of_a_failed_trial_spares_the_fast_learner_but_not_a_refused_step():
    """
    An echo trip in the wake cuts nothing either; an unusable RLS step is the learners'.

    (A review's reproduction: the echo figure with rho low went to the fast learner's
    own 10x cut, the one path the wake did not cover.)
    """
    from lnn_control import control_kernels as CK, supervisor as S
    per_s = None

    def in_wake():
        nonlocal per_s
        ctrl = AdaptiveController(zoo.controller_params('random_3_40'))
        sv = ctrl.supervisor
        per_s = round(1.0 / ctrl.dt)
        sv._detune_if_recurring()
        ctrl.ticks += per_s
        sv._detune_if_recurring()
        sv._rollback('first trip')
        sv._resume('test')
        ctrl.ticks += int(S.PROBE_AFTER_S[0] * per_s)
        sv._trial()
        sv._trial_failed('cycle')
        ctrl.ticks += per_s // 2
        return ctrl, sv

    ctrl, sv = in_wake()
    sv._stats[CK.SV_WHY] = CK.SV_WHY_ECHO
    sv._stats[CK.SV_TOTAL] = 1.0
    sv._stats[CK.SV_RHO] = 0.1
    assert sv.ratio < S.GOOD_FRACTION * sv.trip_ratio
    before = (sv.gain_scale, sv.fast_cut, sv.gain_capped)
    sv._act(CK.SV_ROLLBACK, False)
    assert (sv.gain_scale, sv.fast_cut, sv.gain_capped) == before
    assert 'no cut' in sv.interventions[-1].reason
    ctrl, sv = in_wake()
    sv._act(CK.SV_ROLLBACK, True)                     # a refused step: cut as ever
    assert sv.fast_cut == 0.0 and 'numerically unusable' in sv.interventions[-1].reason


def test_the_gain_given_back_stays_within_the_covariance_the_readouts_start_from():
    """
    The cap follows the readouts' own start, not a live setting awaiting its reset.

    (A review's reproduction: built at rls.initial_covariance 1e4, then set to 1 live,
    three detunings restarted the slow readout at 1e4, 100x the validated 100.) And a
    gain that reaches the cap by way of x0.1 and /0.1 is the cap, not a hair below it.
    """
    from lnn_control import supervisor as S
    ctrl = AdaptiveController({**zoo.controller_params('random_3_40'),
                               'rls.initial_covariance': 1e4})
    sv, per_s = ctrl.supervisor, round(1.0 / ctrl.dt)
    ctrl.update_params({'rls.initial_covariance': 1.0})      # applies at the next reset
    sv.gain_scale = 1e-3
    for _ in range(5):
        sv._detune_if_recurring()
        ctrl.ticks += per_s
    assert sv.gain_scale == pytest.approx(S.VALIDATED_COVARIANCE / 1e4)
    np.testing.assert_allclose(np.diag(ctrl.slow.p),                # restarted at the cap
                               sv.gain_scale * ctrl.slow.initial_covariance)
    ctrl = AdaptiveController(zoo.controller_params('random_3_40'))
    sv = ctrl.supervisor
    sv.gain_scale = 1.0 * S.GAIN_CUT * S.GAIN_CUT             # 0.010000000000000002
    for _ in range(3):
        sv._detune_if_recurring()
        ctrl.ticks += per_s
    assert sv.gain_scale == 1.0
    n = len(sv.interventions)
    ctrl.ticks += per_s
    sv._detune_if_recurring()                         # at the cap: nothing given back
    assert len(sv.interventions) == n + 1
    assert 'adaptation gain' not in sv.interventions[-1].reason


def test_an_arm_whose_pd_loop_cycles_with_the_delay_learns_with_a_softer_loop():
    """
    Zoo arm3_vertical with a tick of delay: its honest PD loop is unstable.

    (gains --delay-ticks 1); PD alone cycles at its limits. Held at PD the adaptive run
    was 0.95x PD; kept at a softer PD output it learns (0.25x PD over the zoo's 60 s).
    """
    name = 'arm3_vertical'
    params = zoo.controller_params(name)
    pd, adaptive = (CL.run(zoo.model_name(name), params, 30.0, learning=learning,
                           delay_ticks=1) for learning in (False, True))
    assert 'pd_detuned' in [action for _, action, _ in adaptive.meta['interventions']]
    assert adaptive.meta['pd_scale'] < 1.0
    assert CL.rms(adaptive, 20.0, 30.0) < 0.5 * CL.rms(pd, 20.0, 30.0)
    assert CL.worst_window_ratio(pd, adaptive) <= 1.0


def _learn_well(ctrl, seconds, learning=True, rho_max=0.0):
    """Advance ``seconds`` of learning (rho at most ``rho_max``) through the snapshot path."""
    sv = ctrl.supervisor
    interval = 2 * int(sv._stats[CK.SV_WINDOW])
    for _ in range(int(round(seconds / (interval * ctrl.dt)))):
        ctrl.ticks += interval
        sv._stats[CK.SV_INTERVAL], sv._stats[CK.SV_MAX] = interval, rho_max
        ctrl.learning_enabled = learning
        sv._take_snapshot()
    ctrl.learning_enabled = True


def _trips(ctrl, count):
    for _ in range(count):
        ctrl.supervisor._rollback('test trip')
        ctrl.supervisor._resume('test')
        ctrl.ticks += round(1.0 / ctrl.dt)


def test_learning_that_went_well_gets_back_a_step_of_the_ladder_and_a_trip_takes_it_again():
    """
    The start-up trips' cuts are not kept for good (response 6).

    After CLIMB_AFTER_S of learning without a trip (held or not learning: not counted), at
    a good snapshot, one cut of adaptation gain comes back, up to one cut below the
    highest gain a trip cut; then the fast learner. A trip on probation takes that step
    again (no further cut) and doubles the wait.
    """
    from lnn_control import supervisor as S
    ctrl = AdaptiveController(zoo.controller_params('pendulum_viscous'))
    sv = ctrl.supervisor
    initial = [r.p.copy() for r in ctrl.readouts()]
    _trips(ctrl, 4)                     # capped, fast learner off, x0.1, x0.01
    assert sv.readout_gains() == pytest.approx((0.01, 0.0)) and sv.gain_capped
    assert sv.gain_tripped == 1.0                   # (the first cut came at x1)
    for r in ctrl.readouts():
        r.w[:] = 0.01                               # learned since
    _learn_well(ctrl, 30.0, learning=False)         # learning off: not counted
    _learn_well(ctrl, S.CLIMB_AFTER_S[0] - 4.0)
    assert sv.readout_gains() == pytest.approx((0.01, 0.0))       # not yet
    _learn_well(ctrl, 4.0)
    assert sv.readout_gains() == pytest.approx((0.1, 0.0))
    assert sv.interventions[-1].action == 'gain_restored'
    assert 'adaptation gain back up to x0.1' in sv.interventions[-1].reason
    np.testing.assert_allclose(ctrl.slow.p, 0.1 * initial[0])    # restarted, weights kept
    assert np.all(ctrl.slow.w == 0.01)
    _learn_well(ctrl, 2.0)
    sv._rollback('test trip on probation of the gain')     # takes the gain back, no more
    assert sv.readout_gains() == pytest.approx((0.01, 0.0))
    assert 'adaptation gain back at x0.01' in sv.interventions[-1].reason
    sv._resume('test')
    _learn_well(ctrl, S.CLIMB_AFTER_S[0])
    assert sv.readout_gains() == pytest.approx((0.01, 0.0))       # the wait doubled
    _learn_well(ctrl, S.CLIMB_AFTER_S[0])
    assert sv.readout_gains() == pytest.approx((0.1, 0.0))
    assert f'{2 * S.CLIMB_AFTER_S[0]:g} s of learning' in sv.interventions[-1].reason
    _learn_well(ctrl, 2 * S.CLIMB_AFTER_S[0])   # x1 tripped: one cut below; fast back on
    assert sv.readout_gains() == pytest.approx((0.1, 0.1)) and ctrl.fast_active
    assert 'fast learner back on' in sv.interventions[-1].reason and sv.gain_capped
    np.testing.assert_allclose(ctrl.fast.p, 0.1 * initial[1])
    _learn_well(ctrl, 2.0)
    sv._rollback('test trip on probation of the fast learner')
    assert sv.readout_gains() == pytest.approx((0.1, 0.0)) and not ctrl.fast_active
    assert 'fast learner off again' in sv.interventions[-1].reason
    sv._resume('test')
    _learn_well(ctrl, 8 * S.CLIMB_AFTER_S[0])
    assert ctrl.fast_active
    _learn_well(ctrl, S.CLIMB_PROBATION_S + 2.0)
    sv._rollback('test trip after probation')     # the ladder as usual
    assert sv.readout_gains() == pytest.approx((0.1, 0.0))
    assert 'fast learner switched off' in sv.interventions[-1].reason
    ctrl.reset_learning()
    assert sv.gain_tripped == 0.0 and sv._climb.wait_s == S.CLIMB_AFTER_S[0]


def test_learning_that_does_no_harm_gets_a_step_back_before_it_is_good():
    """
    A learner cut to x0.01 can take 40 s to read rho below half the trip ratio.

    Random arms with a tick of delay tracked at 0.5x PD until then; intervals with rho below
    the trip ratio count, and one above it does not.
    """
    from lnn_control import supervisor as S
    ctrl = AdaptiveController(zoo.controller_params('pendulum_viscous'))
    sv = ctrl.supervisor
    _trips(ctrl, 4)                                 # capped, fast learner off, x0.1, x0.01
    snapshots = sv.snapshots
    ctrl.slow.w[:] = 0.01                           # learned since
    harmless, harmful = 0.8 * sv.trip_ratio, 1.05 * sv.trip_ratio
    assert harmless > S.GOOD_FRACTION * sv.trip_ratio      # not good
    _learn_well(ctrl, S.CLIMB_AFTER_S[0] - 2.0, rho_max=harmless)
    _learn_well(ctrl, 2.0, rho_max=harmful)
    assert sv.readout_gains() == pytest.approx((0.01, 0.0))
    _learn_well(ctrl, 2.0, rho_max=harmless)        # the interval after a harmful one
    assert sv.readout_gains() == pytest.approx((0.01, 0.0))
    _learn_well(ctrl, 2.0, rho_max=harmless)
    assert sv.readout_gains() == pytest.approx((0.1, 0.0))
    assert sv.interventions[-1].action == 'gain_restored'
    assert sv.snapshots == snapshots                # none of it was a good snapshot
    ctrl.slow.w[:] = 0.5                            # learned on probation, then a trip:
    sv._rollback('test trip on probation of the gain')
    assert sv.readout_gains() == pytest.approx((0.01, 0.0))
    np.testing.assert_array_equal(ctrl.slow.w, 0.01)   # back to the climb, not to zero


def test_time_held_after_a_trip_does_not_count_as_learning_without_one():
    """A PD-only hold restarts learning from zero: the 20 s count from then."""
    from lnn_control import supervisor as S
    ctrl = AdaptiveController(zoo.controller_params('pendulum_viscous'))
    sv = ctrl.supervisor
    _trips(ctrl, 3)                                 # capped, off, x0.1
    sv._rollback('test trip')
    sv._pd_only('still harmful')
    ctrl.ticks += int(8.0 / ctrl.dt)                # the hold
    sv._resume('test')
    _learn_well(ctrl, S.CLIMB_AFTER_S[0] - 4.0)
    assert sv.interventions[-1].action == 'resume'
    _learn_well(ctrl, 4.0)
    assert sv.interventions[-1].action == 'gain_restored'


def test_no_step_is_given_back_while_the_pd_output_is_kept_softer_or_in_inverse_model():
    """Response 4 gives back its own step; in inverse_model the fast learner stays off."""
    from lnn_control import supervisor as S
    ctrl = AdaptiveController(zoo.controller_params('pendulum_viscous'))
    sv = ctrl.supervisor
    _trips(ctrl, 3)
    sv.detune = S.DETUNE_FACTOR
    _learn_well(ctrl, 2 * S.CLIMB_AFTER_S[0])
    assert sv.readout_gains() == pytest.approx((0.1, 0.0))
    sv.detune = 1.0
    sv._trials.until = ctrl.ticks + 1000            # a trial of more PD gain running
    _learn_well(ctrl, 2.0)
    assert sv.readout_gains() == pytest.approx((0.1, 0.0))
    sv._trials.until = -1
    _learn_well(ctrl, 2.0)
    assert sv.readout_gains() == pytest.approx((0.1, 0.1))
    inverse = AdaptiveController({**zoo.controller_params('pendulum_viscous'),
                                  'controller.mode': 'inverse_model'})
    _trips(inverse, 1)
    assert inverse.supervisor.fast_cut == 0.0
    _learn_well(inverse, 4 * S.CLIMB_AFTER_S[0])
    assert not inverse.fast_active and inverse.supervisor.interventions[-1].action == 'resume'


def test_the_highest_gain_a_trip_cut_is_saved_with_the_readout(tmp_path):
    """Loaded, a cut gain comes back as it would have (files without it: cut from full)."""
    ctrl = AdaptiveController(zoo.controller_params('pendulum_viscous'))
    _trips(ctrl, 4)
    ctrl.save(str(tmp_path / 'readout.npz'))
    other = AdaptiveController(zoo.controller_params('pendulum_viscous'))
    other.load(str(tmp_path / 'readout.npz'))
    assert other.supervisor.gain_tripped == 1.0
    _learn_well(other, 25.0)
    assert other.supervisor.readout_gains() == pytest.approx((0.1, 0.0))
    ctrl.supervisor.gain_tripped = 0.1              # (cut from x1 at a first trip at x0.1)
    ctrl.save(str(tmp_path / 'readout.npz'))
    other.load(str(tmp_path / 'readout.npz'))
    _learn_well(other, 25.0)
    assert other.supervisor.readout_gains() == pytest.approx((0.01, 0.01))  # the fast one
    data = dict(np.load(tmp_path / 'readout.npz'))
    del data['supervisor/gain_tripped']
    np.savez(tmp_path / 'old.npz', **data)
    old = AdaptiveController(zoo.controller_params('pendulum_viscous'))
    old.load(str(tmp_path / 'old.npz'))
    assert old.supervisor.gain_tripped == 1.0


def test_an_oscillating_fast_learner_just_back_on_goes_off_again_and_the_slow_one_learns_on():
    """
    The echo figure's trip on probation takes the step back, not just a 10x cut.

    (random_5_19 with delay: cut to x0.1, the fast learner pushed the command into its
    limits a quarter second later, a second trip.) On probation of a gain step it takes
    the gain back and cuts nothing more; a fast learner back on starts anew, so the echo
    figure judges it only after ARM_AFTER_S unless a snapshot arms it.
    """
    from lnn_control import supervisor as S
    ctrl = AdaptiveController(zoo.controller_params('pendulum_viscous'))
    sv = ctrl.supervisor
    _trips(ctrl, 2)                     # capped, then the fast learner off
    sv._stats[CK.SV_ARMED] = 0.0
    _learn_well(ctrl, S.CLIMB_AFTER_S[0])
    assert ctrl.fast_active and sv.interventions[-1].action == 'gain_restored'
    assert sv._arm_tick >= ctrl.ticks + round(0.9 * S.ARM_AFTER_S / ctrl.dt)
    ctrl.fast.w[:] = 0.5                # what an oscillating fast learner picked up
    ctrl.ticks += 3 * round(1.0 / ctrl.dt)
    sv._cut_fast('feedforward above the loop bandwidth')
    assert not ctrl.fast_active and not ctrl.fast.w.any() and sv.state == 'learning'
    assert 'switched off again' in sv.interventions[-1].reason
    assert sv._climb.wait_s == 2 * S.CLIMB_AFTER_S[0]
    _learn_well(ctrl, 2 * S.CLIMB_AFTER_S[0])
    assert ctrl.fast_active
    _learn_well(ctrl, S.CLIMB_PROBATION_S + 2.0)
    sv._cut_fast('feedforward above the loop bandwidth')      # after probation: the usual cut
    assert sv.fast_cut == S.GAIN_CUT and 'its gain now x0.1' in sv.interventions[-1].reason
    gains = AdaptiveController(zoo.controller_params('pendulum_viscous'))
    _trips(gains, 1)                    # capped only
    gains.supervisor._climb.tripped = 1.0
    gains.supervisor.gain_scale = 0.01
    _learn_well(gains, S.CLIMB_AFTER_S[0])
    assert gains.supervisor.readout_gains() == pytest.approx((0.1, 0.1))
    gains.supervisor._cut_fast('feedforward above the loop bandwidth')
    assert gains.supervisor.readout_gains() == pytest.approx((0.01, 0.01))
    assert 'adaptation gain back at x0.01' in gains.supervisor.interventions[-1].reason


def test_a_fast_learner_the_start_up_trips_switched_off_comes_back():
    """
    Zoo cartpole_heavy_load with a tick of delay (seed 1): two start-up trips switch it off.

    Without it the model lagged: 0.3-0.47x PD over 5 s windows for good, 0.42x after
    payload x2. Back on 20 s later it holds: 0.05-0.08x PD.
    """
    name = 'cartpole_heavy_load'
    params = {**zoo.controller_params(name), 'reservoir.seed': 1, 'reference.seed': 1}
    pd, adaptive = (CL.run(zoo.model_name(name), params, 40.0, learning=learning,
                           delay_ticks=1, noise_seed=1) for learning in (False, True))
    log = adaptive.meta['interventions']
    assert any('fast learner switched off' in why for _, _, why in log), log
    assert any(action == 'gain_restored' and 'fast learner back on' in why
               for _, action, why in log), log
    assert CL.rms(adaptive, 35.0, 40.0) < 0.15 * CL.rms(pd, 35.0, 40.0)
    assert CL.worst_window_ratio(pd, adaptive) <= 1.0


def test_a_rollback_after_an_input_scale_grew_restores_the_snapshot_in_the_new_units():
    """
    Rescale the snapshots with the readouts when automatic normalisation grows a scale.

    The readouts keep their outputs when a scale grows (their weights are rescaled); a
    snapshot kept in the old units would, rolled back, change the feedforward by the
    scale factor on every direct input.
    """
    params = {**zoo.controller_params('arm_geared'), 'reservoir.seed': 0}
    ctrl = AdaptiveController(params)
    _loop(ctrl, zoo.model_name('arm_geared'), 2.0)
    sv, norm, n = ctrl.supervisor, ctrl.normalizer, ctrl.n
    sv.reset()                                  # snapshot = the readouts as they are now
    norm._before = norm.scale.copy()
    norm.scale[n:2 * n] *= 3.0                  # the velocity scale grew 3x
    before = [r.w.copy() for r in ctrl.readouts()]
    ctrl._rescale_readouts()
    rescaled = [r.w.copy() for r in ctrl.readouts()]
    assert all(not np.allclose(a, b) for a, b in zip(before, rescaled))
    for r in ctrl.readouts():
        r.w *= -10.0                            # learning goes wrong after the change
    sv.fast_cut = 0.1       # a later trip: both readouts rolled back (the first: fast off)
    sv._rollback('test')
    for r, w in zip(ctrl.readouts(), rescaled):
        np.testing.assert_allclose(r.w, w, rtol=1e-12, atol=0.0)


def test_an_oscillating_fast_learner_is_cut_without_stopping_the_slow_readout():
    """
    The echo figure's first trip rolls back and cuts only the fast learner; learning goes on.

    After a plant change the restarted fast learner can echo the PD effort above the loop's
    bandwidth. Rolling both readouts back to the pre-change snapshot and freezing them
    brought the old plant's model back and cost arm_geared (seed 1) 0.41x PD after a
    payload change, against 0.15x with only the fast learner cut. A second trip, the fast
    learner already cut, is the full rollback.
    """
    from lnn_control import control_kernels as CK
    ctrl = AdaptiveController({**zoo.controller_params('pendulum_viscous'), 'reservoir.seed': 0})
    _loop(ctrl, zoo.model_name('pendulum_viscous'), 8.0)
    sv = ctrl.supervisor
    assert sv.snapshots >= 1 and sv.interventions == []
    good_fast = sv._good[1].copy()
    slow_w = ctrl.slow.w.copy()
    ctrl.fast.w += 1.0                          # what an oscillating fast learner left
    sv._stats[CK.SV_WHY] = CK.SV_WHY_ECHO
    sv._act(CK.SV_ROLLBACK, False)
    assert sv.state == 'learning' and sv.readout_gains() == (1.0, 0.1)
    np.testing.assert_array_equal(ctrl.slow.w, slow_w)
    np.testing.assert_array_equal(ctrl.fast.w, good_fast)
    first = sv.interventions[-1]
    assert first.action == 'rollback' and 'oscillation' in first.reason
    assert 'slow readout learns on' in first.reason
    sv._stats[CK.SV_WHY] = CK.SV_WHY_ECHO
    sv._act(CK.SV_ROLLBACK, False)
    assert sv.state == 'frozen' and sv.readout_gains() == pytest.approx((0.1, 0.01))
    assert 'adaptation gain now x0.1' in sv.interventions[-1].reason


@pytest.mark.slow
def test_a_fast_learner_pumping_an_unmeasured_mode_is_caught_after_the_arming_time():
    """
    The echo figure is armed after ``ARM_AFTER_S`` of learning even with no snapshot.

    The heavy cart-pole tracking a 0.2 Hz reference, with the honest gains for it and a
    tick of delay: the capped fast learner pumps the pole (0.6 Hz, inside the loop's
    bandwidth). The echo figure reads 1.2-2.5 from the first seconds, so no snapshot ever
    armed it, and rho reads 0.4 (the command grows with the error): before, the error
    grew to 5x PD's over 50 s (1.5x over 30-40 s). Now the echo, armed by time, trips
    while the pumping grows, the fast learner goes off, and no 10 s window after the first
    is worse than PD. (Its trip came 1.4 s after the arming time, with a window of 1.27x
    PD before it, until the readouts learned towards the feedforward applied: since, the
    pumping grows more slowly and the trip comes at 54 s, the worst window 0.84x.)
    """
    from lnn_control.plants import honest_gains
    from lnn_control.supervisor import ARM_AFTER_S
    name = 'cartpole_heavy_load'
    kp, kd = honest_gains(Plant(zoo.model_name(name)), max_reference_hz=0.2)
    params = {**zoo.controller_params(name), 'kp': kp.tolist(), 'kd': kd.tolist(),
              'reference.frequency_hz': 0.2, 'reservoir.seed': 0, 'reference.seed': 0}
    pd, adaptive = (CL.run(zoo.model_name(name), params, 60.0, learning=learning,
                           delay_ticks=1) for learning in (False, True))
    echo = [(t, why) for t, action, why in adaptive.meta['interventions']
            if action == 'rollback' and 'oscillation' in why]
    assert echo and ARM_AFTER_S <= echo[0][0], adaptive.meta['interventions']
    assert all('fast learner switched off' in why for _, why in echo)   # its step only
    assert CL.worst_window_ratio(pd, adaptive) < 0.9                    # was 1.5x


def test_armed_by_time_the_echo_figure_judges_only_a_capped_fast_learner():
    """
    Without a promoted snapshot the echo figure, armed by time, judges only the fast learner.

    Only once a trip capped the learners' gain (the capped fast learner is what can pump
    an unmeasured mode) and where the reference's frequency is below half the loop's
    bandwidth. Its trip is the fast learner's next step (off); then time no longer arms
    the figure (a promoted snapshot still may), so it never cuts the slow readout's gain.
    """
    from lnn_control import control_kernels as CK
    from lnn_control.supervisor import ARM_AFTER_S
    ctrl = AdaptiveController({**zoo.controller_params('pendulum_viscous'), 'reservoir.seed': 0})
    sv = ctrl.supervisor
    ctrl.ticks = int(ARM_AFTER_S / ctrl.dt)         # learning from zero this long
    sv._act(CK.SV_SNAPSHOT, False)
    assert sv._stats[CK.SV_ARMED] == 0.0            # the fast learner is not capped
    sv.gain_capped = True                           # as the first trip does
    bandwidth = ctrl.kp[0] / ctrl.kd[0]
    envelope = ctrl.normalizer.envelope             # the reference's peaks: |q|, |qd|, |qdd|
    envelope[:] = (0.5, 1.0, 0.6 * bandwidth)       # its frequency above half the bandwidth:
    sv._stats[CK.SV_MAX] = 1.0                      # (rho high since: nothing promoted)
    sv._act(CK.SV_SNAPSHOT, False)                  # power above the bandwidth is no symptom
    assert sv._stats[CK.SV_ARMED] == 0.0
    envelope[2] = 0.4 * bandwidth
    sv._stats[CK.SV_MAX] = 1.0
    sv._act(CK.SV_SNAPSHOT, False)                  # no snapshot promoted: time arms it
    assert sv.snapshots == 0 and sv._stats[CK.SV_ARMED] == 1.0
    sv._stats[CK.SV_WHY] = CK.SV_WHY_ECHO
    sv._act(CK.SV_ROLLBACK, False)
    assert 'oscillation' in sv.interventions[-1].reason
    assert 'fast learner switched off' in sv.interventions[-1].reason
    assert sv.gain_scale == 1.0                     # the slow readout's gain is not cut
    assert sv.readout_gains()[1] == 0.0 and sv._stats[CK.SV_ARMED] == 0.0
    sv._resume('test')
    ctrl.ticks += 10 * int(ARM_AFTER_S / ctrl.dt)
    sv._stats[CK.SV_MAX] = 1.0
    sv._act(CK.SV_SNAPSHOT, False)
    assert sv._stats[CK.SV_ARMED] == 0.0             # nothing left for time to arm it for


def _armed_by_time(ctrl):
    """Arm the echo figure by time on a fresh controller (capped, slow reference)."""
    from lnn_control import control_kernels as CK
    from lnn_control.supervisor import ARM_AFTER_S
    sv = ctrl.supervisor
    ctrl.ticks = int(ARM_AFTER_S / ctrl.dt)
    sv.gain_capped = True
    ctrl.normalizer.envelope[:] = (0.5, 1.0, 0.4 * ctrl.kp[0] / ctrl.kd[0])
    sv._stats[CK.SV_MAX] = 1.0
    sv._act(CK.SV_SNAPSHOT, False)
    assert sv._armed_by_time and sv._stats[CK.SV_ARMED] == 1.0
    return sv


def test_a_trip_that_switches_the_fast_learner_off_disarms_the_time_armed_echo_figure():
    """Any trip that leaves no fast learner to judge disarms it: it can never cut the slow one."""
    from lnn_control import control_kernels as CK
    ctrl = AdaptiveController({**zoo.controller_params('pendulum_viscous'), 'reservoir.seed': 0})
    sv = _armed_by_time(ctrl)
    sv._stats[CK.SV_WHY] = CK.SV_WHY_RHO              # a rho trip, not the echo figure
    sv._act(CK.SV_ROLLBACK, False)
    assert 'fast learner switched off' in sv.interventions[-1].reason
    assert sv._stats[CK.SV_ARMED] == 0.0 and not sv._armed_by_time
    n = ctrl.n
    for k in range(int(sv._stats[CK.SV_WINDOW]) + 5):  # the hold: a chattering feedforward
        pd = np.full(n, 1.0)
        ff = np.full(n, 4.0 * (-1) ** k)
        sv.observe(pd, ff, pd + ff, 0)
        ctrl.ticks += 1
    assert sv.counts['pd_only'] == 0 and not sv._owed_cut


def test_a_time_armed_trip_is_ignored_once_the_gains_put_the_reference_above_half_the_bandwidth():
    from lnn_control import control_kernels as CK
    ctrl = AdaptiveController({**zoo.controller_params('pendulum_viscous'), 'reservoir.seed': 0})
    sv = _armed_by_time(ctrl)
    ctrl.update_params({'kp': (ctrl.kp / 4).tolist()})     # kp/kd 4x lower
    sv._stats[CK.SV_WHY] = CK.SV_WHY_ECHO
    sv._act(CK.SV_ROLLBACK, False)
    assert sv.interventions == [] and sv.readout_gains()[1] == 1.0
    assert sv._stats[CK.SV_ARMED] == 0.0


@pytest.mark.parametrize('hold', ['rollback', 'pd_only'])
def test_switching_the_supervisor_off_during_a_hold_ends_the_hold(hold):
    """
    A frozen or PD-only hold ends when the supervisor is switched off.

    Disabled, the supervisor no longer runs its timers, so a hold it was in would
    otherwise freeze learning for good (found by a review over the node's interface).
    """
    ctrl = AdaptiveController(zoo.controller_params('pendulum_heavy_coulomb'))
    sv, zero = ctrl.supervisor, np.zeros(1)
    for k in range(20):
        ctrl.step((zero, zero), (np.array([0.001 * k]), zero, zero))
    sv._rollback('injected') if hold == 'rollback' else sv._pd_only('injected')
    assert not sv.learning_allowed
    ctrl.update_params({'supervisor.enabled': False})
    assert sv.state == 'learning' and sv.interventions[-1].action == 'resume'
    assert 'supervisor disabled' in sv.interventions[-1].reason
    updates = ctrl.slow.updates
    for k in range(20):
        ctrl.step((zero, zero), (np.array([0.001 * k]), zero, zero))
    assert ctrl.slow.updates == updates + 20 and ctrl.saturation_pauses == 0
    ctrl.update_params({'supervisor.enabled': True})     # back on: watches again
    assert sv.enabled and sv.state == 'learning'


def test_a_robot_resting_where_it_needs_no_effort_is_not_judged_on_vanishing_efforts():
    """
    At rest with no effort needed, efforts below 0.1 % of the command limit are not judged.

    There (a hanging pendulum, a SCARA) every effort decays to 1e-20: rho, a ratio of two
    such, read 10 here and tripped; in a closed loop a minute of rest wiped what had been
    learned (restart from zero, gain cut to 1e-10). ``SV_EFFORT_FLOOR``.
    """
    from lnn_control import control_kernels as CK
    st = np.zeros(CK.SV_SIZE)
    st[CK.SV_ALPHA], st[CK.SV_TRIP], st[CK.SV_WINDOW], st[CK.SV_HOLD] = 0.1, 1.1, 10, 30
    st[CK.SV_HOLD_FACTOR], st[CK.SV_ARMED] = 2, 1.0
    gains, lp = np.array([[10.0], [0.1], [1.0]]), np.zeros((6, 1))
    for k in range(200):
        pd = np.array([1e-20 * (-1) ** k])          # decaying and chattering at Nyquist
        ff = -0.9 * pd
        assert CK.supervise(pd, ff, pd + ff, gains, lp, 0, False, st) in (0, CK.SV_SNAPSHOT)
    assert st[CK.SV_RHO] == pytest.approx(1.0) and st[CK.SV_ECHO] < 1e-12
    assert st[CK.SV_CHATTER] == 1.0                  # not judged either
    # the same efforts at a scale that matters: judged as before (rho 10, a rollback)
    codes = [CK.supervise(np.array([0.5]), np.array([-0.45]), np.array([0.05]), gains, lp, 0,
                          False, st) for _ in range(10)]
    assert CK.SV_ROLLBACK in codes and st[CK.SV_WHY] == CK.SV_WHY_RHO


def test_trips_with_learning_off_cut_nothing_and_cuts_stop_at_a_floor(tmp_path):
    """
    A frozen readout that trips is rolled back, but nothing learns, so nothing is cut.

    Cut on every such trip (learning off, the plant changed), the gain reached 0 in half an
    hour: the readout was zeroed, saving wrote a file loading refused, and a plant-change
    restart raised out of ``step``. With learning on, cuts stop at ``GAIN_FLOOR``.
    """
    from lnn_control import supervisor as SV
    name = 'pendulum_viscous'
    ctrl = AdaptiveController(zoo.controller_params(name))
    _loop(ctrl, zoo.model_name(name), 15.0)
    sv = ctrl.supervisor
    assert sv.snapshots > 0          # a rollback restores a readout that learned
    ctrl.update_params({'learning_enabled': False})
    for _ in range(40):
        sv._rollback('injected')
        sv._resume('injected')
    sv._stats[CK.SV_WHY] = CK.SV_WHY_ECHO        # an echo trip with rho low: the same
    sv._act(CK.SV_ROLLBACK, False)
    sv._resume('injected')
    assert sv.gain_scale == 1.0 and sv.fast_cut == 1.0 and ctrl.slow.w.any()
    rollbacks = [i.reason for i in sv.interventions if i.action == 'rollback']
    assert len(rollbacks) == 41 and all('no cut (learning is off)' in r for r in rollbacks)
    ctrl.update_params({'learning_enabled': True})
    for _ in range(40):
        sv._rollback('injected')
        sv._resume('injected')
    assert sv.gain_scale == SV.GAIN_FLOOR and ctrl.slow.w.any()
    ctrl.plant_changed('injected')                       # restarts at the cut gain: no raise
    path = str(tmp_path / 'readout.npz')
    ctrl.save(path)
    assert AdaptiveController(zoo.controller_params(name)).load(path) is None


def test_a_hold_is_reported_as_long_as_it_lasts():
    """hold_s below window_s: the kernel holds a full window, and the log says so."""
    ctrl = AdaptiveController({**CL.plant_params('pendulum'), 'supervisor.hold_s': 0.1,
                               'supervisor.window_s': 1.0})
    ctrl.supervisor._rollback('injected')
    assert 'learning frozen for 1 s' in ctrl.supervisor.interventions[-1].reason


def test_a_joint_without_kp_neither_voids_the_gain_cap_nor_reads_as_an_echo():
    """A joint with kp 0 (damping only): its bandwidth 0 made the gain cap 0 (none)."""
    params = zoo.controller_params('arm_geared')
    kp = list(params['kp'])
    ctrl = AdaptiveController({**params, 'kp': [0.0, *kp[1:]]})
    sv = ctrl.supervisor
    assert 0.0 < sv.gain_cap_per_step < 1.0
    assert sv._gains[2, 0] == 1.0              # that joint's efforts are not low-passed
    sv.gain_capped = True
    assert all(r.gain_cap == sv.gain_cap_per_step for r in ctrl.readouts())


def test_a_bounded_or_switched_off_feedforward_does_not_wind_the_readout_up():
    """
    The readouts learn towards the feedforward applied plus the PD output.

    Learned as if their unbounded prediction had been applied, with ``feedforward_limit``
    0 (or a low bound) the slow readout's prediction grew without bound (207 N m against a
    command limit of 14 after 60 s) and, switched back on with the supervisor off, the
    arm tracked 16x worse than PD.
    """
    name = 'pendulum_viscous'
    params = {**zoo.controller_params(name), 'supervisor.enabled': False}
    ctrl = AdaptiveController(params)
    _loop(ctrl, zoo.model_name(name), 10.0)
    limit = float(ctrl.command_limit[0])
    for bound in (0.0, 0.02):
        ctrl.update_params({'feedforward_limit': bound})
        _loop(ctrl, zoo.model_name(name), 30.0)
        raw = ctrl.slow.predict(ctrl._phi)
        assert np.abs(raw).max() < 0.5 * limit, (bound, raw, limit)
    ctrl.update_params({'feedforward_limit': 0.8})
    err = _loop(ctrl, zoo.model_name(name), 5.0)
    pd = _loop(AdaptiveController({**params, 'learning_enabled': False}), zoo.model_name(name),
               5.0)
    assert _rms(err, ctrl.dt, 0.0, 5.0) < _rms(pd, ctrl.dt, 0.0, 5.0)


def test_a_plant_change_brings_the_next_trial_of_full_pd_gains_forward():
    """A heavier payload can make full gains stable; the softer loop waited a doubled wait."""
    from lnn_control.supervisor import TRIAL_AFTER_CHANGE_S

    ctrl = AdaptiveController({**zoo.controller_params('arm_friction'), 'supervisor.enabled': True})
    sv = ctrl.supervisor
    ctrl.plant_changed('told')
    assert sv._trials.at == -1                      # full gains: nothing to try
    sv.detune, sv._trials.at, sv._trials.wait_s = 0.7, 10**6, 160.0
    ctrl.plant_changed('told')
    assert sv._trials.at == ctrl.ticks + round(TRIAL_AFTER_CHANGE_S / ctrl.dt)
    assert sv._trials.wait_s == 20.0
    sv._trials.until = ctrl.ticks + 100             # a trial running: left as it is
    at = sv._trials.at
    ctrl.plant_changed('told')
    assert sv._trials.at == at
