"""
The plant zoo (deterministic, offline).

Shipped models equal the generator, honest gains, and the default learning
settings on its hardest members.
"""
import json

from lnn_control import cli, zoo, zoo_report
from lnn_control.plants import honest_gains, Plant
import numpy as np
import pytest

pytestmark = pytest.mark.unit


def test_zoo_files_are_generated_from_the_table():
    for name in zoo.names():
        path = zoo.ZOO_DIR / f'{name}.xml'
        assert path.read_text(encoding='utf-8') == zoo.mjcf(name), \
            'regenerate: python -m lnn_control.zoo'
    assert sorted(p.stem for p in zoo.ZOO_DIR.glob('*.xml')) == sorted(zoo.names())


def test_zoo_spans_the_family():
    specs = list(zoo.ZOO.values())
    pend = [s for s in specs if isinstance(s, zoo.Pendulum)]
    assert len(specs) >= 12
    assert min(s.mass for s in pend) <= 0.3 and max(s.mass for s in pend) >= 5.0
    assert min(s.length for s in pend) <= 0.2 and max(s.length for s in pend) >= 1.2
    assert any(s.friction > 0 for s in pend) and any(s.armature > 0 for s in pend)
    arms = [s for s in specs if isinstance(s, zoo.Arm)]
    assert len(arms) >= 3 and max(len(s.masses) for s in arms) >= 3
    assert any(s.horizontal for s in arms)                # a SCARA: no gravity load
    assert any(isinstance(s, zoo.CartPole) for s in specs)
    assert any(isinstance(s, zoo.Lift) for s in specs)    # a linear axis lifting its load


def test_new_kinds_are_written_as_the_robots_they_describe():
    """The 3-link arm hangs, the SCARA's axes are vertical, the lift slides up and down."""
    arm3, scara, lift = (Plant(zoo.model_name(n)) for n in ('arm3_vertical', 'scara', 'lift'))
    assert arm3.n == 3 and scara.n == 2 and lift.n == 1
    assert (scara.model.jnt_axis == [0, 0, 1]).all()      # gravity loads no joint
    assert (arm3.model.jnt_axis == [0, 1, 0]).all()
    slide = 2                                             # mujoco.mjtJoint.mjJNT_SLIDE
    assert lift.model.jnt_type[0] == slide and (lift.model.jnt_axis[0] == [0, 0, 1]).all()
    assert zoo.effort_limits('lift')[0] > 4 * 5.0 * zoo.G   # holds its load with margin
    assert zoo.reference_amplitude('lift') == zoo.AMPLITUDE_M


def test_random_draws_come_from_the_family_and_are_reproducible():
    names = zoo.random_names(5, 9)
    specs = [zoo.spec(n) for n in names]
    assert [type(s) for s in specs[:3]] == [zoo.Pendulum, zoo.Arm, zoo.CartPole]
    assert specs == [zoo.spec(n) for n in zoo.random_names(5, 9)]    # same seed, same plants
    assert specs[0] != zoo.spec(zoo.random_names(6, 1)[0])
    for s in specs:
        if isinstance(s, zoo.Pendulum):
            assert 0.3 <= s.mass <= 5.0 and 0.2 <= s.length <= 1.2
        elif isinstance(s, zoo.Arm):
            assert 0.4 <= s.masses[0] <= 3.0 and 0.2 <= s.lengths[1] <= 0.55
        else:
            assert 0.4 <= s.cart_mass <= 3.0 and 0.3 <= s.pole_length <= 1.0
    plant = Plant(zoo.model_name(names[1]))      # written as MJCF, loadable, honest gains
    assert plant.n == 2 and zoo.controller_params(names[1])['joints'] == list(plant.joint_names)
    for bad in ('random_5', 'random_x_1', 'pendulum_huge'):
        with pytest.raises(ValueError, match='unknown zoo plant'):
            zoo.spec(bad)


@pytest.mark.parametrize('name', zoo.names() + tuple(zoo.random_names(0, 3)))
def test_zoo_gains_follow_the_honest_rule(name):
    plant = Plant(zoo.model_name(name))
    params = zoo.controller_params(name)
    kp, kd = honest_gains(plant)
    np.testing.assert_allclose(params['kp'], kp, rtol=1e-3)
    np.testing.assert_allclose(params['kd'], kd, rtol=1e-3)
    wn = np.sqrt(np.asarray(params['kp']) / plant.nominal_inertia())
    assert (wn >= 4 * 2 * np.pi * 0.55 * (1 - 1e-4)).all()   # kp is rounded
    np.testing.assert_allclose(plant.effort_limit, params['command_limit'])


def test_another_reference_changes_the_task_and_the_gains_not_the_robot(tmp_path):
    """``--reference-hz`` etc.: gains by the honest rule for the new frequency, same limits."""
    name = 'arm_geared'
    plant = Plant(zoo.model_name(name))
    base = zoo.controller_params(name)
    other = zoo.controller_params(name, {'frequency_hz': 0.2, 'amplitude_scale': 2.0,
                                         'offset_scale': 1.2})
    kp, kd = honest_gains(plant, max_reference_hz=0.2)
    np.testing.assert_allclose(other['kp'], kp, rtol=1e-3)
    np.testing.assert_allclose(other['kd'], kd, rtol=1e-3)
    assert other['command_limit'] == base['command_limit']
    assert other['reference.frequency_hz'] == 0.2
    assert other['reference.amplitude'] == [1.0, 1.0] and other['reference.offset'] == [0.6, 0.6]
    from lnn_control import schema                     # the default task: as before
    assert base['reference.frequency_hz'] == schema.by_name()['reference.frequency_hz'].default
    assert base['reference.offset'] == [0.0, 0.0] and base['reference.amplitude'] == [0.5, 0.5]
    from lnn_control import cli
    for flag in (['--reference-hz', '0'], ['--amplitude-scale', '-1'], ['--offset-scale', 'nan']):
        assert cli.main(['zoo', '--plants', name, '--out', str(tmp_path), *flag]) == 2


# The hardest members with the defaults (measured when this was written; see the
# README's zoo table): every run learns, and none is worse than PD in any window.
HARD = ['arm_heavy_tip', 'arm_geared', 'pendulum_5kg']


@pytest.fixture(scope='module')
def hard_rows():
    return {(r['plant'], r['variant']): r
            for r in zoo.run_zoo(HARD, ('nominal', 'noise', 'delay'), (0,), workers=2)}


@pytest.mark.slow
@pytest.mark.parametrize('name', HARD)
def test_defaults_on_hard_zoo_plants(hard_rows, name):
    r = hard_rows[(name, 'nominal')]
    assert r['ratio'] <= 0.1, r
    assert r['ratio_after_change'] <= 0.15, r
    assert r['worst_window_ratio'] <= 0.2, r


@pytest.mark.slow
@pytest.mark.parametrize('name', HARD)
@pytest.mark.parametrize('variant', ['noise', 'delay'])
def test_noise_and_delay_variants_never_worse_than_pd(hard_rows, name, variant):
    r = hard_rows[(name, variant)]
    assert r['worst_window_ratio'] <= 1.2, r
    if variant == 'noise' or name != 'arm_heavy_tip':
        assert r['ratio'] <= 0.3 and r['ratio_after_change'] <= 0.3, r
    else:
        # arm_heavy_tip with a tick of delay: its honest PD loop itself limit-cycles
        # in saturation (docs/zoo.md); feedforward cannot stabilise a feedback loop, so
        # the supervisor holds it at PD: equal to PD up to the retries it backs off from
        # (measured 1.00008; 0.998 when the first trip cut every gain)
        assert r['ratio'] <= 1.005, r


# The kinds added on 2026-12-05 (docs/zoo.md, "Three more kinds"): measured nominal ratio
# 0.007-0.041, after the change 0.007-0.049; no window above PD in any variant.
NEW_KINDS = ['arm3_vertical', 'scara', 'lift']


@pytest.fixture(scope='module')
def new_kind_rows():
    return {(r['plant'], r['variant']): r
            for r in zoo.run_zoo(NEW_KINDS, ('nominal', 'delay'), (0,), workers=2)}


@pytest.mark.slow
@pytest.mark.parametrize('name', NEW_KINDS)
def test_defaults_on_a_3_link_arm_a_scara_and_a_lift(new_kind_rows, name):
    r = new_kind_rows[(name, 'nominal')]
    assert r['ratio'] <= 0.1 and r['ratio_after_change'] <= 0.15, r
    assert r['worst_window_ratio'] <= 0.2, r
    assert new_kind_rows[(name, 'delay')]['worst_window_ratio'] <= 1.2, r


@pytest.mark.slow
@pytest.mark.parametrize('change', ['friction_x3', 'payload_x0.5'])
def test_re_adapts_to_a_friction_step_and_a_payload_halving(change):
    """
    Measured: friction x3 detected after 0.13 s, readaptation ratio 0.90.

    Recovery ratio 2.5 (the plant with three times the friction is harder to
    track: learned from the start it leaves 1.9x the error); payload x0.5 1.06
    and 1.07.
    """
    r = zoo.run_member(('pendulum_heavy_coulomb', 'nominal', 0, {}, change))
    assert r['change'] == change
    assert r['ratio_after_change'] <= 0.1 and r['worst_window_ratio'] <= 0.2, r
    assert r['readaptation_ratio'] <= 1.5 and r['interventions'] == 0, r
    assert r['recovery_ratio'] <= 3.0, r
    assert r['false_detections'] == 0, r
    assert r['detection_delay_s'] is not None and r['detection_delay_s'] <= 1.0, r
    assert 0.0 <= r['recovery_time_s'] <= zoo.DURATION_S - zoo.CHANGE_AT_S


@pytest.mark.slow
@pytest.mark.parametrize('extra', [
    {'rls.initial_covariance': 0.1}, {'rls.initial_covariance': 100.0},
    {'rls.forgetting_factor': 0.9}, {'rls.forgetting_factor': 1.0},
    {'rls.fast_forgetting_factor': 0.5}, {'rls.fast_forgetting_factor': 0.99},
    {'rls.fast_learner': False},
])
def test_sweep_corners_never_diverge(extra):
    r = zoo.run_member(('arm_geared', 'nominal', 0, extra))
    assert r['worst_window_ratio'] <= 1.2, r


@pytest.mark.slow
def test_the_top_of_the_covariance_range_is_brought_back_at_the_first_trip():
    """
    Cap P0 at the validated range's top (100) at the first trip, instead of cutting 10x.

    rls.initial_covariance 1e6 is inside its declared range; cut ten-fold per trip it
    took five trips, each a second at 2-4x PD's error (windows of 1.67x PD).
    """
    r = zoo.run_member(('arm_heavy_tip', 'nominal', 0, {'rls.initial_covariance': 1e6}))
    trips = [i for i in r['intervention_log'] if i[1] in ('rollback', 'pd_only')]
    assert r['worst_window_ratio'] <= 0.5 and len(trips) <= 3, r   # (not gain_restored)


@pytest.mark.slow
def test_the_ltc_reservoir_re_learning_an_arm_never_pumps_it():
    """
    A feedforward that oscillates above the loop's bandwidth is rolled back.

    With ltc neurons arm_geared re-learned payload x2 in a self-excited 3 Hz oscillation
    that rho did not see (its windows reached 1.95x PD); the echo figure trips on it.
    """
    r = zoo.run_member(('arm_geared', 'nominal', 0, {'reservoir.neuron_model': 'ltc'}))
    assert r['worst_window_ratio'] <= 0.5 and r['ratio'] <= 0.1, r
    assert any('oscillation' in i[2] for i in r['intervention_log']), r


@pytest.mark.slow
def test_a_transient_out_of_band_echo_while_re_learning_costs_only_the_fast_learner():
    """
    The esn defaults re-learning a payload on arm_geared (seed 1) echo out of band for ~1 s.

    The echo figure trips on it; rolling both readouts back to the pre-change snapshot and
    freezing them cost 0.41x PD after the change (target 0.15). Only the fast learner is
    rolled back and cut, the slow readout learns on.
    """
    r = zoo.run_member(('arm_geared', 'nominal', 1, {}))
    assert r['ratio_after_change'] <= 0.15 and r['worst_window_ratio'] <= 0.25, r
    rollbacks = [i[2] for i in r['intervention_log'] if i[1] == 'rollback']
    assert all('slow readout learns on' in reason for reason in rollbacks), rollbacks


@pytest.mark.slow
def test_with_actuation_delay_the_fast_learner_does_not_pump_an_unmeasured_pole():
    """
    A cart-pole the defaults never saw, one tick of delay: the learners' gain is capped.

    The supervisor trips at start-up with the delay. A cut of the fast learner's
    covariance (x0.1) left it at a gain that slowly pumped the pole (after payload x2
    1.59x PD, windows 2.0x); the cap keeps the gain where it is fast enough not to.
    """
    r = zoo.run_member(('random_7_29', 'delay', 0, {}))
    assert r['ratio_after_change'] <= 0.3 and r['worst_window_ratio'] <= 0.6, r
    first = r['intervention_log'][0]
    assert first[0] < 1.0 and 'learning gain capped' in first[2], first
    assert r['interventions'] == 1, r['intervention_log']


@pytest.mark.slow
def test_the_defaults_hold_at_another_control_rate():
    """Nothing in the defaults is tied to 100 Hz: a 2-link arm controlled at 250 Hz."""
    r = zoo.run_member(('arm_geared', 'nominal', 0, {'control_rate_hz': 250.0}))
    assert r['ratio'] <= 0.05 and r['ratio_after_change'] <= 0.1, r
    assert r['worst_window_ratio'] <= 0.2 and r['interventions'] == 0, r


@pytest.mark.slow
def test_the_report_names_honest_pd_loops_that_chatter_or_cycle_with_delay():
    # arm_friction's honest loop is unstable with a tick of delay (lnn-control gains says
    # so); random_137_28's kd chatters at 100 Hz; a pendulum's loop is fine either way
    checks = {(name, delay): zoo.pd_loop_check(name, zoo.controller_params(name), delay)
              for name in ('arm_friction', 'random_137_28', 'pendulum_tiny') for delay in (0, 1)}
    assert checks[('pendulum_tiny', 0)] == checks[('pendulum_tiny', 1)] == []
    assert checks[('arm_friction', 0)] == []
    assert checks[('arm_friction', 1)] == [
        'PD loop unstable with 1 tick of delay (spectral radius 1.14)']
    assert checks[('random_137_28', 0)] == [
        'kd chatters at 100 Hz (kd dt / effective inertia 1.81 > 1)']
    # a 200 Hz loop halves kd dt: no longer flagged
    params = {**zoo.controller_params('random_137_28'), 'control_rate_hz': 200.0}
    assert zoo.pd_loop_check('random_137_28', params) == []
    rows = [{'plant': 'arm_friction', 'variant': v, 'pd_loop_check': checks[('arm_friction', d)]}
            for v, d in (('nominal', 0), ('noise', 0), ('delay', 1))]
    notes = zoo_report.pd_loop_notes(rows)
    assert '- arm_friction (delay): PD loop unstable with 1 tick of delay' in notes
    assert zoo_report.pd_loop_notes(rows[:2]) == ''


def test_zoo_cli_writes_table_json_and_figure(tmp_path):
    out = tmp_path / 'zoo'
    code = cli.main(['zoo', '--plants', 'pendulum_tiny,pendulum_5kg', '--variants', 'nominal',
                     '--changes', 'payload_x2,friction_x3', '--workers', '1',
                     '--out', str(out), '--quiet'])
    assert code == 0
    doc = json.loads((out / 'zoo.json').read_text())
    # pendulum_tiny has no Coulomb friction: no friction step for it
    assert [(r['plant'], r['change']) for r in doc['runs']] == [
        ('pendulum_tiny', 'payload_x2'), ('pendulum_5kg', 'payload_x2'),
        ('pendulum_5kg', 'friction_x3')]
    assert all('recovery_time_s' in r and 'recovery_ratio' in r and 'readaptation_ratio' in r
               for r in doc['runs'])
    assert '| pendulum_tiny | nominal | 0 | payload_x2 |' in (out / 'zoo.md').read_text()
    assert (out / 'zoo.png').stat().st_size > 10_000
    assert cli.main(['zoo', '--plants', 'nope', '--quiet']) == 2
    out = tmp_path / 'drawn'
    assert cli.main(['zoo', '--random', '1', '--random-seed', '4', '--variants', 'nominal',
                     '--workers', '1', '--out', str(out), '--quiet']) == 0
    (row,) = json.loads((out / 'zoo.json').read_text())['runs']
    assert row['plant'] == 'random_4_0' and row['drawn'].startswith('Pendulum(')
    assert row['ratio'] < 1.0
    assert cli.main(['zoo', '--changes', 'payload_x9', '--quiet']) == 2
    # the zoo sets the seeds per run: one set with --param made two seeds one run
    assert cli.main(['zoo', '--plants', 'pendulum_tiny', '--seeds', '0,1', '--param',
                     'reservoir.seed=7', '--quiet']) == 2
