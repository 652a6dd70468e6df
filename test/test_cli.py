"""The lnn-control command line."""
import json
import math
import os
import re
import subprocess
import sys

from lnn_control import cli
from lnn_control import closed_loop
from lnn_control import schema
import numpy as np
import pytest

pytestmark = pytest.mark.unit


@pytest.mark.slow
def test_offline_demo_writes_summary_and_figure(tmp_path):
    out = tmp_path / 'run'
    code = cli.main(['demo', '--mode', 'offline', '--plant', 'pendulum', '--neuron', 'esn',
                     '--duration', '16', '--payload-change-at', '4', '--out', str(out),
                     '--quiet'])
    assert code == 0
    summary = json.loads((out / 'summary.json').read_text())
    for key in ('plant', 'neuron', 'rms_pd', 'rms_adaptive', 'ratio', 'rms_pd_after',
                'rms_adaptive_after', 'ratio_after_change', 'recovery_ratio'):
        assert key in summary
    assert summary['ratio'] == summary['rms_adaptive'] / summary['rms_pd']
    assert (out / 'tracking.png').stat().st_size > 10_000


@pytest.mark.parametrize('param', ['reference.mode=hold', 'reference.amplitude=[0.0]'])
def test_a_reference_pd_tracks_exactly_gives_no_ratio_and_says_why(tmp_path, param):
    """With PD's error 0 the ratio was a ZeroDivisionError after the whole run."""
    out = tmp_path / 'run'
    assert cli.main(['demo', '--mode', 'offline', '--duration', '2', '--param', param,
                     '--out', str(out), '--quiet']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['rms_pd'] == 0.0 and summary['ratio'] is None
    assert any('tracks this reference exactly' in n for n in summary['notes'])
    assert (out / 'tracking.png').exists()


def test_summary_windows_cut_short_by_the_run_are_said_not_hidden():
    """A change 0.5 s before the end: figures after it were NaN, with numpy warnings."""
    from lnn_control import closed_loop as CL
    import numpy as np
    t = np.arange(0.0, 15.0, 0.01)
    zero = np.zeros((t.size, 1))
    pd = CL.Trace(t, np.full((t.size, 1), 0.1), zero, zero, zero[:, 0])
    adaptive = CL.Trace(t, np.full((t.size, 1), 0.01), zero, zero, zero[:, 0])
    s = CL.summarize(pd, adaptive, 15.0, 14.5)
    assert s['ratio'] == pytest.approx(0.1) and s['ratio_after_change'] is None
    assert s['windows'] == {'before_s': [4.5, 14.5], 'after_s': [15.0, 15.0]}
    assert s['notes'] == ['the run ends before the window after the change begins: no '
                          'figures after it']
    s = CL.summarize(pd, adaptive, 12.0, 6.0)
    assert s['windows'] == {'before_s': [0.0, 6.0], 'after_s': [11.0, 12.0]}
    assert len(s['notes']) == 2 and s['ratio_after_change'] == pytest.approx(0.1)
    assert 'windows' not in CL.summarize(pd, adaptive, 15.0, None)


def test_demo_refuses_a_change_outside_the_run(tmp_path, capsys):
    out = tmp_path / 'run'
    rc = cli.main(['demo', '--duration', '5', '--payload-change-at', '9', '--out', str(out)])
    assert rc == 2 and 'payload-change-at' in capsys.readouterr().err
    assert not out.exists()                     # nothing written for a refused run


@pytest.mark.parametrize('argv, message', [
    (['demo', '--duration', '0'], 'must be finite and > 0'),
    (['demo', '--duration', 'inf'], 'must be finite and > 0'),
    (['demo', '--duration', '1e12'], 'from 1 s to 86400 s'),
    (['demo', '--duration', '0.01'], 'from 1 s to 86400 s'),    # was an IndexError
    (['zoo', '--random', '-3', '--list'], 'must be >= 0'),
    (['gains', '--control-rate-hz', '0'], 'must be finite and > 0'),
])
def test_bad_numbers_are_refused_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['demo', '--neuron', 'esn', '--param', 'reservoir.neuron_model=lif'], 'contradicts'),
    (['zoo', '--plants', 'pendulum_tiny', '--changes', 'friction_x3'], 'no runs'),
    (['zoo', '--seeds', 'a'], 'comma-separated integers'),
    (['zoo', '--plants', 'pendulum_tiny,'], 'an empty name'),
    (['gains', '--control-rate-hz', '5000'], 'control_rate_hz must be <= '),
    (['gains', '--max-reference-hz', '1e300'], 'reference.frequency_hz must be <= '),
    (['gains', '--bandwidth-factor', '1e300'], 'at most 100'),
    (['zoo', '--plants', 'pendulum_tiny', '--seeds', '3000000000'], 'reservoir.seed must be'),
    (['zoo', '--plants', 'random_5_x'], 'unknown zoo plants, variants or changes: random_5_x'),
    (['zoo', '--plants', 'pendulum_tiny,arm_geared', '--param', 'kp=[10,10]'],
     '--param on pendulum_tiny: kp needs one value per joint (1)'),
    # named --param although no --param was given
    (['zoo', '--plants', 'pendulum_tiny', '--reference-hz', '100'],
     '--reference-hz on pendulum_tiny: reference.frequency_hz must be <= '),
    (['demo', '--mode', 'offline', '--param', 'kp=abc'],        # said 'kp must be a list'
     "kp must be a list of numbers (one per joint, or one for all); got 'abc'"),
])
def test_bad_arguments_are_refused_before_any_work(argv, message, tmp_path, capsys):
    out = tmp_path / 'out'
    argv = argv + (['--out', str(out)] if argv[0] != 'gains' else [])
    assert cli.main(argv) == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_one_number_for_a_per_joint_parameter_applies_to_every_joint():
    """--param kp=5 was refused ('kp must be a list'); a YAML file's kp: 5 is not."""
    assert cli._param_overrides(['kp=5', 'reservoir.size=50', 'learning_enabled=false']) == {
        'kp': [5], 'reservoir.size': 50, 'learning_enabled': False}


def test_param_values_are_read_as_ros2_run_reads_them():
    """YAML, as -p NAME:=VALUE: joints=[wrist, lift] was one string ('joints must be a list')."""
    assert cli._param_overrides(['joints=[wrist, lift]', 'rls.forgetting_factor=1e-3',
                                 'reservoir.neuron_model=ltc']) == {
        'joints': ['wrist', 'lift'], 'rls.forgetting_factor': 0.001,
        'reservoir.neuron_model': 'ltc'}


def test_gains_take_a_random_zoo_draw_as_zoo_lists_it(capsys):
    """The zoo lists random_5_7; gains --plant zoo/random_5_7 refused it."""
    from lnn_control import zoo
    assert zoo.is_member('random_5_7') and not zoo.is_member('random_5')
    assert cli.main(['gains', '--plant', 'zoo/random_5_7']) == 0
    assert json.loads(capsys.readouterr().out)['joints'] == ['joint1', 'joint2']


@pytest.mark.parametrize('plant, expected',
                         [('cartpole', ['pole']), ('pendulum', None), ('arm2', None)])
def test_gains_name_a_lightly_damped_mode_the_controller_does_not_measure(plant, expected,
                                                                          capsys):
    """
    The cart-pole's pole swings at ~0.85 Hz inside the PD loop's 2.2 Hz, undamped.

    Learning pumped such a pole to 2.55x PD over a run (random_61_26, 0.92 Hz, where
    this check reads 0.921 Hz); nothing said so beforehand.
    """
    assert cli.main(['gains', '--plant', plant]) == 0
    out = capsys.readouterr()
    modes = json.loads(out.out)['unmeasured_modes']
    if expected is None:
        assert modes == [] and 'does not measure' not in out.err
        return
    assert [m['joints'] for m in modes] == [expected]
    assert 0.7 < modes[0]['hz'] < 1.0 and modes[0]['damping_ratio'] < 0.05
    assert 'does not measure (pole)' in out.err and 'rls.fast_learner' in out.err


def test_gains_scan_for_unmeasured_modes_above_the_natural_frequency_too(tmp_path, capsys):
    """
    A series-elastic joint: a geared motor (friction), a soft spring, the link unmeasured.

    Above the loop's 2.2 Hz, so the scan up to the natural frequency missed it, and a
    learned feedforward pumped it (the link 2.7x PD's error over 10 s windows).
    """
    path = tmp_path / 'series_elastic.xml'
    path.write_text("""<mujoco><option timestep="0.001"/><worldbody>
      <body name="rotor" pos="0 0 1">
        <joint name="motor" axis="0 1 0" armature="0.05" frictionloss="0.05"/>
        <geom type="sphere" size="0.01" mass="0.01"/>
        <body name="link"><joint name="spring" axis="0 1 0" stiffness="30" damping="0.02"/>
          <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.03" mass="1"/></body></body>
    </worldbody><actuator><motor joint="motor" ctrlrange="-15 15"/></actuator></mujoco>""")
    assert cli.main(['gains', '--plant', str(path)]) == 0
    out = capsys.readouterr()
    modes = json.loads(out.out)['unmeasured_modes']
    assert [m['joints'] for m in modes] == [['spring']] and 2.2 < modes[0]['hz'] < 4.4
    assert 'does not measure (spring)' in out.err


def test_gains_name_a_sag_of_centimetres_on_a_slide(tmp_path, capsys):
    """A 10 kg lift: PD alone 5 cm low, unnamed while the threshold was 0.1 'rad or m'."""
    path = tmp_path / 'lift.xml'
    path.write_text("""<mujoco><option timestep="0.001"/><worldbody>
      <body name="carriage"><joint name="z" type="slide" axis="0 0 1" range="-0.5 0.5"/>
        <geom type="box" size="0.1 0.1 0.1" mass="10"/></body></worldbody>
      <actuator><motor joint="z" ctrlrange="-400 400"/></actuator></mujoco>""")
    assert cli.main(['gains', '--plant', str(path)]) == 0
    err = capsys.readouterr().err
    assert 'z: gravity takes 98.1 N here, so PD alone holds it about 0.051 m off' in err
    # the demo says the same (its summary.json too), with the gains command to see it
    out = tmp_path / 'demo'
    assert cli.main(['demo', '--mode', 'offline', '--plant', str(path), '--duration', '2',
                     '--out', str(out), '--quiet']) == 0
    warnings = json.loads((out / 'summary.json').read_text())['warnings']
    assert any(w.startswith('z: gravity takes 98.1 N here') and 'lnn-control gains' in w
               for w in warnings), warnings


def test_gains_design_at_a_pose_and_print_significant_digits(tmp_path, capsys):
    """
    An arm's inertia depends on its pose: --pose designs where the robot works.

    By default where the demo designs, the centre of its reference (``gains`` designed at
    q = 0 and the demo at the centre: 311 and 686 for one yaw joint's kp); gains are
    printed to 4 significant digits (a 25 g finger's kd, 4.4e-4, printed as 0.0 to three
    decimals: an undamped loop for whoever copied it); gravity that PD alone leaves far
    off its target is named.
    """
    path = tmp_path / 'arm.xml'
    path.write_text("""<mujoco><compiler angle="radian"/><option timestep="0.002"/><worldbody>
      <body name="l1"><joint name="j1" axis="0 1 0" range="0.2 1.5" limited="true"/>
        <geom type="capsule" fromto="0 0 0 0.4 0 0" size="0.03" mass="2"/>
        <body name="l2" pos="0.4 0 0"><joint name="j2" axis="0 1 0"/>
          <geom type="capsule" fromto="0 0 0 0.4 0 0" size="0.03" mass="1"/>
          <body name="finger" pos="0.4 0 0"><joint name="f" axis="0 1 0"/>
            <geom type="capsule" fromto="0 0 0 0.04 0 0" size="0.005" mass="0.025"/>
    </body></body></body></worldbody><actuator><motor joint="j1" ctrlrange="-80 80"/>
      <motor joint="j2" ctrlrange="-30 30"/><motor joint="f" ctrlrange="-0.00012 0.00012"/>
    </actuator>
    </mujoco>""")
    assert cli.main(['gains', '--plant', str(path)]) == 0
    out = capsys.readouterr()
    at_zero = json.loads(out.out)
    demo = closed_loop.plant_params(str(path))
    assert at_zero['pose'] == [0.83, 0.0, 0.0] == demo['reference.offset']   # range clear
    assert at_zero['kp'] == pytest.approx(demo['kp'], rel=1e-3)
    assert 0.0 < at_zero['kd'][2] < 1e-3 and at_zero['command_limit'][2] == 0.00012
    assert 'PD alone holds it about' in out.err          # a horizontal arm against gravity
    assert cli.main(['gains', '--plant', str(path), '--pose', '1.2,-1.5,0']) == 0
    bent = json.loads(capsys.readouterr().out)
    assert bent['pose'] == [1.2, -1.5, 0.0]
    assert bent['nominal_inertia'][0] < 0.8 * at_zero['nominal_inertia'][0]  # folded arm
    assert bent['kp'][0] < at_zero['kp'][0]
    assert cli.main(['gains', '--plant', str(path), '--pose', '2,0,0']) == 0
    assert '--pose puts j1 at 2, outside its range (0.2 to 1.5)' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(['gains', '--plant', str(path), '--pose', '1,nan'])
    assert cli.main(['gains', '--plant', str(path), '--pose', '1,2']) == 2
    assert 'a pose is 3 finite joint positions' in capsys.readouterr().err


def test_gains_give_the_command_limit_in_joint_effort(tmp_path, capsys):
    """
    The control range times gain and gear, the node's command_limit; none without a range.

    A user copying ctrlrange into command_limit was off by the gear (200x on a lift).
    """
    model = tmp_path / 'geared.xml'
    model.write_text(
        '<mujoco><worldbody><body><joint name="lift" type="slide" axis="0 0 1"/>'
        '<geom type="box" size=".1 .1 .1" mass="4"/><body pos="0 0 .2">'
        '<joint name="wrist" axis="0 1 0"/><geom type="capsule" fromto="0 0 0 .2 0 0" '
        'size=".02" mass=".5"/></body></body></worldbody><actuator>'
        '<motor joint="lift" gear="200" ctrllimited="true" ctrlrange="-0.6 0.6"/>'
        '<motor joint="wrist" gear="50"/></actuator></mujoco>')
    assert cli.main(['gains', '--plant', str(model)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)['command_limit'] == [120.0, None]
    assert 'wrist: its actuator has no ctrlrange' in out.err


def test_gains_name_friction_and_springs_the_rule_leaves_out(tmp_path, capsys):
    """A stick-slip joint's dead band and a joint spring: the baseline is not what it seems."""
    model = tmp_path / 'sticky.xml'
    model.write_text(
        '<mujoco><option gravity="0 0 0"/><worldbody><body>'
        '<joint name="sticky" axis="0 0 1" frictionloss="6"/>'
        '<geom type="capsule" fromto="0 0 0 .5 0 0" size=".03" mass="1"/>'
        '<body pos=".5 0 0"><joint name="sprung" axis="0 0 1" stiffness="40"/>'
        '<geom type="capsule" fromto="0 0 0 .3 0 0" size=".02" mass=".5"/></body>'
        '</body></worldbody><actuator><motor joint="sticky" ctrllimited="true" '
        'ctrlrange="-8 8"/><motor joint="sprung" ctrllimited="true" ctrlrange="-8 8"/>'
        '</actuator></mujoco>')
    assert cli.main(['gains', '--plant', str(model)]) == 0
    warnings = json.loads(capsys.readouterr().out)['warnings']
    assert any(w.startswith('sticky: Coulomb friction 6 stops PD alone') for w in warnings)
    assert any(w.startswith('sprung: a joint spring of 40 against kp') for w in warnings)
    # against a finger's travel of 0.04 m, a dead band of 0.05 m is one too
    finger = tmp_path / 'finger.xml'
    finger.write_text(
        '<mujoco><worldbody><body><joint name="finger" type="slide" axis="1 0 0" '
        'range="0 0.04" limited="true" frictionloss="0.5"/><geom type="box" '
        'size=".005 .01 .03" mass=".1"/></body></worldbody><actuator><motor '
        'joint="finger" ctrllimited="true" ctrlrange="-20 20"/></actuator></mujoco>')
    assert cli.main(['gains', '--plant', str(finger)]) == 0
    (warning,) = json.loads(capsys.readouterr().out)['warnings']
    assert warning.startswith('finger: Coulomb friction 0.5 stops PD alone'), warning


@pytest.mark.slow
def test_demo_offline_runs_a_users_own_mjcf(tmp_path, capsys):
    """
    PD only against adaptive on a model of one's own, before any parameter file.

    ``demo`` took the bundled plants only: a user had to call the closed loop from Python.
    Joints, gains and limits come from the model as ``gains`` gives them; a node's own
    parameter file (use_sim_time and all) overrides them (over ROS: test_ros_demo).
    """
    model = tmp_path / 'arm.xml'
    model.write_text(
        '<mujoco><option timestep="0.001"/><worldbody><body><joint name="a" axis="0 1 0" '
        'damping="0.1"/><geom type="capsule" fromto="0 0 0 .3 0 0" size=".02" mass="1"/>'
        '</body></worldbody><actuator><motor joint="a" gear="10" ctrllimited="true" '
        'ctrlrange="-3 3"/></actuator></mujoco>')
    out = tmp_path / 'out'
    argv = ['demo', '--mode', 'offline', '--plant', str(model), '--duration', '6',
            '--out', str(out), '--quiet']
    assert cli.main(argv) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['plant'] == str(model) and summary['ratio'] < 0.5
    assert (out / 'tracking.png').is_file()
    params = tmp_path / 'arm.yaml'
    params.write_text('/**:\n  ros__parameters:\n    use_sim_time: true\n    kp: [0.0]\n'
                      '    kd: [0.0]\n')
    assert cli.main(argv + ['--params-file', str(params), '--param', 'learning_enabled=false']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['rms_pd'] > 0.1                 # no gains: the arm hangs


_ARM_WITH_A_PASSIVE_JOINT = (
    '<mujoco><option timestep="0.002"/><worldbody><body><joint name="shoulder" axis="0 1 0"/>'
    '<geom type="capsule" fromto="0 0 0 .3 0 0" size=".03" mass="2"/><body pos=".3 0 0">'
    '<joint name="elbow" axis="0 1 0"/><geom type="capsule" fromto="0 0 0 .25 0 0" '
    'size=".02" mass="1"/><body pos=".25 0 0"><joint name="flex" axis="0 1 0" '
    'stiffness="5"/><geom type="sphere" size=".03" mass=".2"/><body>'
    '<joint name="finger" type="slide" axis="1 0 0"/><geom type="box" size=".01 .01 .01" '
    'mass=".05"/></body></body></body></body></worldbody><actuator>'
    '<motor joint="shoulder" ctrllimited="true" ctrlrange="-40 40"/>'
    '<motor joint="elbow" ctrllimited="true" ctrlrange="-20 20"/>'
    '<motor joint="finger" ctrllimited="true" ctrlrange="-5 5"/></actuator></mujoco>')


def test_a_users_model_runs_the_joints_chosen_with_gains_of_its_own(tmp_path, capsys):
    """
    ``--param joints=[...]`` on an MJCF model: gains, limits and reference for those joints.

    They came for every actuated joint, so the count check refused kp (3 values for 2
    joints) before any name was looked at, also for a joint not in the model.
    """
    from lnn_control import closed_loop as CL
    from lnn_control.plants import honest_gains, Plant

    model = tmp_path / 'arm.xml'
    model.write_text(_ARM_WITH_A_PASSIVE_JOINT)
    params = CL.plant_params(str(model), {'joints': ['shoulder', 'elbow']})
    plant = Plant(str(model), joints=['shoulder', 'elbow'])
    plant.set_design_pose(params['reference.offset'])
    kp, kd = honest_gains(plant)
    assert params['kp'] == pytest.approx(kp, rel=1e-5) and len(params['kd']) == 2
    assert params['command_limit'] == [40.0, 20.0]
    assert len(params['reference.amplitude']) == len(params['reference.offset']) == 2
    assert cli.main(['gains', '--plant', str(model), '--joints', 'shoulder,elbow']) == 0
    assert json.loads(capsys.readouterr().out)['kp'] == pytest.approx(kp, rel=1e-3)
    for joints, said in ((['nowhere'], "no hinge or slide joint named ['nowhere']"),
                         (['flex'], "joints ['flex'] are not actuated")):
        with pytest.raises(ValueError, match=re.escape(said)):
            CL.plant_params(str(model), {'joints': joints})
    assert cli.main(['demo', '--mode', 'offline', '--plant', str(model), '--param',
                     'joints=[shoulder, nowhere]', '--out', str(tmp_path / 'o')]) == 2
    assert "no hinge or slide joint named ['nowhere']" in capsys.readouterr().err
    ranged = tmp_path / 'ranged.xml'        # a reference set beyond the elbow's range
    ranged.write_text(_ARM_WITH_A_PASSIVE_JOINT.replace(
        '<joint name="elbow" axis="0 1 0"/>',
        '<joint name="elbow" axis="0 1 0" limited="true" range="-1 1"/>').replace(
        '<mujoco>', '<mujoco><compiler angle="radian"/>'))
    assert cli.main(['demo', '--mode', 'offline', '--plant', str(ranged), '--param',
                     'joints=[shoulder, elbow]', '--param', 'reference.offset=[0.0, 0.8]',
                     '--duration', '1', '--out', str(tmp_path / 'r'), '--quiet']) == 0
    said = ('the reference runs from 0.3 to 1.3 on elbow, beyond its range in the model '
            '(-1 to 1)')
    assert said in capsys.readouterr().err
    assert any(said in w for w in json.loads((tmp_path / 'r' / 'summary.json').read_text())[
        'warnings'])


def test_the_demo_says_when_the_pd_loop_both_arms_run_chatters(tmp_path, capsys):
    """
    A baseline that chatters at its limits judges the controller against a broken PD.

    ``gains`` warned, ``demo`` ran the same gains silently and recorded none of them; nor
    did it name a lightly damped mode that learning can pump.
    """
    out = tmp_path / 'run'
    assert cli.main(['demo', '--mode', 'offline', '--plant', 'zoo/arm_heavy_tip', '--param',
                     'control_rate_hz=50', '--duration', '1', '--out', str(out),
                     '--quiet']) == 0
    err = capsys.readouterr().err
    assert ('warning: the PD loop of both arms: kd chatters at 50 Hz (kd dt / effective '
            'inertia 1.91 > 1); see lnn-control gains --plant zoo/arm_heavy_tip '
            '--control-rate-hz 50\n') in err
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['pd_loop_check'] == ['kd chatters at 50 Hz (kd dt / effective inertia '
                                        '1.91 > 1)']
    controller = summary['controller']
    assert controller['joints'] == ['joint1', 'joint2'] and controller['control_rate_hz'] == 50
    assert len(summary['ratio_per_joint']) == 2         # the pooled ratio mixes joints
    assert len(controller['kp']) == len(controller['kd']) == len(controller['command_limit']) == 2
    assert summary['unmeasured_modes'] == []
    assert cli.main(['demo', '--mode', 'offline', '--duration', '1', '--out', str(out),
                     '--quiet']) == 0
    assert 'warning' not in capsys.readouterr().err
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['pd_loop_check'] == []
    # what it tracked (the node's default, topic, follows messages a demo does not send)
    assert summary['controller']['reference.mode'] == 'sum_of_sines'
    # the pole, which the controller does not measure, as gains names it
    assert cli.main(['demo', '--mode', 'offline', '--plant', 'cartpole', '--duration', '1',
                     '--out', str(out), '--quiet']) == 0
    assert ('warning: a lightly damped mode at 0.845 Hz (damping ratio 0.0102) in joints the '
            'controller does not measure (pole)') in capsys.readouterr().err
    assert cli.main(['demo', '--mode', 'offline', '--plant', 'cartpole', '--duration', '1',
                     '--param', 'rls.fast_learner=false', '--out', str(out), '--quiet']) == 0
    assert 'set rls.fast_learner: false' not in capsys.readouterr().err   # (it is)
    modes = json.loads((out / 'summary.json').read_text())['unmeasured_modes']
    assert modes == [{'hz': 0.845, 'damping_ratio': 0.0102, 'joints': ['pole']}]


@pytest.mark.slow
def test_demo_offline_runs_a_zoo_plant_with_the_zoos_settings(tmp_path, capsys):
    """``zoo/<name>`` as lnn_sim and ``gains`` take it: the zoo's gains, limits, reference."""
    out = tmp_path / 'lift'
    assert cli.main(['demo', '--mode', 'offline', '--plant', 'zoo/lift', '--duration', '6',
                     '--out', str(out), '--quiet']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['plant'] == 'zoo/lift' and summary['ratio'] < 0.5
    assert 0.01 < summary['rms_pd'] < 0.1          # the zoo's 0.3 m reference, honest gains
    capsys.readouterr()
    assert cli.main(['demo', '--plant', 'zoo/no_such_plant', '--out', str(out)]) == 2
    assert 'zoo/<name>' in capsys.readouterr().err


def test_out_that_is_a_file_and_a_recording_that_is_not_one_are_refused(tmp_path, capsys):
    afile = tmp_path / 'afile'
    afile.write_text('not a directory, not an MCAP file')
    assert cli.main(['zoo', '--plants', 'pendulum_tiny', '--out', str(afile)]) == 2
    assert 'not a directory' in capsys.readouterr().err
    assert cli.main(['plot', str(afile)]) == 2
    assert 'is not a run.mcap' in capsys.readouterr().err


def test_summary_json_is_strict_json_when_a_figure_is_undefined():
    summary = cli._json_safe({'worst_window_ratio': math.nan, 'runs': [{'x': math.inf}]})
    assert json.loads(json.dumps(summary, allow_nan=False)) == {
        'worst_window_ratio': None, 'runs': [{'x': None}]}


def test_docs_parameter_table_is_generated_from_the_schema(capsys):
    cli.main(['params', '--format', 'markdown'])
    generated = capsys.readouterr().out
    docs = os.path.join(os.path.dirname(__file__), '..', 'docs', 'parameters.md')
    with open(docs, encoding='utf-8') as f:
        assert f.read() == generated, \
            'regenerate: lnn-control params --format markdown > docs/parameters.md'


def test_yaml_export_round_trips_through_the_schema(tmp_path, capsys):
    cli.main(['params', '--format', 'yaml'])
    path = tmp_path / 'p.yaml'
    path.write_text(capsys.readouterr().out)
    assert schema.resolve(schema.load_yaml_overrides(
        str(path), 'lnn_controller'))['reservoir.size'] == 300


def test_a_generated_params_file_applies_in_any_namespace(capsys):
    """Keyed 'lnn_controller:', it was ignored under `namespace:=arm1` (root only)."""
    import yaml

    for node, key in (('controller', '/**'), ('simulator', '/**/lnn_sim')):
        assert cli.main(['params', '--format', 'yaml', '--node', node]) == 0
        assert list(yaml.safe_load(capsys.readouterr().out)) == [key]


def test_console_script_is_installed():
    bindir = os.path.dirname(sys.executable)
    exe = os.path.join(bindir, 'lnn-control')
    result = subprocess.run([exe, 'gains', '--plant', 'pendulum'], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)['kp'][0] > 0


def test_param_overrides_take_json_values_and_plain_strings():
    # 'fixed' starts like 'false': it used to be fed to the JSON parser and fail
    assert cli._param_overrides(['input.normalization=fixed', 'reservoir.neuron_model=ltc',
                                 'rls.initial_covariance=1e6', 'rls.fast_learner=false',
                                 'kp=[1, 2]']) == {
        'input.normalization': 'fixed', 'reservoir.neuron_model': 'ltc',
        'rls.initial_covariance': 1e6, 'rls.fast_learner': False, 'kp': [1, 2]}
    with pytest.raises(ValueError, match='NAME=VALUE'):
        cli._param_overrides(['rls.initial_covariance'])


def test_params_file_for_a_plant_starts_the_nodes_on_it(tmp_path, capsys):
    """
    ``params --format yaml --plant``: a parameter file for any plant, for ``ros2 run``.

    The controller's has the plant's joints, honest gains and limits (a zoo plant's
    reference too), the simulator's its model and joints; both load as the nodes load them.
    """
    from lnn_control import schema, zoo

    files = {}
    for node in ('controller', 'simulator'):
        assert cli.main(['params', '--format', 'yaml', '--plant', 'zoo/lift',
                         '--node', node]) == 0
        files[node] = tmp_path / f'{node}.yaml'
        files[node].write_text(capsys.readouterr().out)
    controller = schema.resolve(schema.load_yaml_overrides(str(files['controller']),
                                                           'lnn_controller'))
    expected = zoo.controller_params('lift')
    for name in ('joints', 'kp', 'kd', 'command_limit', 'reference.amplitude'):
        assert list(controller[name]) == list(expected[name]), name
    sim = schema.load_yaml_overrides(str(files['simulator']), 'lnn_sim')
    assert sim['model'] == 'zoo/lift' and sim['joints'] == ['lift']
    assert cli.main(['params', '--plant', 'zoo/lift']) == 2            # markdown: no plant
    assert cli.main(['params', '--format', 'yaml', '--plant', 'zoo/none']) == 2


NO_CTRLRANGE = """<mujoco><option timestep="0.002"/><worldbody><body>
  <joint name="hinge" type="hinge" axis="0 1 0" damping="0.05"/>
  <geom type="capsule" fromto="0 0 0 0 0 -0.4" size="0.03" mass="1"/>
</body></worldbody><actuator><motor joint="hinge"/></actuator></mujoco>"""


def test_params_for_a_model_without_ctrlrange_takes_the_command_limit_it_asks_for(
        tmp_path, capsys):
    """
    The refusal said 'give one (--param command_limit=...)', which params did not take.

    The simulator's file needs no command limit at all: it was refused the same way.
    """
    from lnn_control import schema

    model = tmp_path / 'nolimit.xml'
    model.write_text(NO_CTRLRANGE)
    assert cli.main(['params', '--format', 'yaml', '--plant', str(model)]) == 2
    assert '--param command_limit=' in capsys.readouterr().err
    assert cli.main(['params', '--format', 'yaml', '--plant', str(model),
                     '--param', 'command_limit=5']) == 0
    (tmp_path / 'c.yaml').write_text(capsys.readouterr().out)
    values = schema.load_yaml_overrides(str(tmp_path / 'c.yaml'), 'lnn_controller')
    assert values['command_limit'] == [5] and values['joints'] == ['hinge']
    assert cli.main(['params', '--format', 'yaml', '--node', 'simulator',
                     '--plant', str(model)]) == 0
    assert 'model: ' + str(model) in capsys.readouterr().out
    assert cli.main(['params', '--format', 'yaml', '--param', 'kp=3']) == 2    # no plant


def test_demo_takes_a_random_zoo_draw_as_zoo_lists_it(tmp_path):
    """The gains command took zoo/random_3_0; demo refused it ('neither a bundled plant')."""
    from lnn_control import zoo

    out = tmp_path / 'run'
    assert cli.main(['demo', '--mode', 'offline', '--plant', 'zoo/random_3_0', '--duration',
                     '12', '--out', str(out), '--quiet']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    expected = zoo.controller_params('random_3_0')
    assert summary['controller']['kp'] == expected['kp'] and summary['ratio'] < 0.5


def test_params_markdown_for_one_node_and_zoo_list_of_the_plants_asked(capsys):
    """--node and --plants were ignored: both tables, every plant."""
    cli.main(['params', '--node', 'simulator'])
    out = capsys.readouterr().out
    assert '## lnn_sim' in out and '## lnn_controller' not in out
    cli.main(['zoo', '--list', '--plants', 'pendulum_5kg,random_131_28'])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ['pendulum_5kg', 'random_131_28']


def test_offline_demo_loads_and_saves_readout_path_with_its_adaptive_arm(tmp_path, capsys):
    """--mode offline ignored readout_path (the ROS demo's adaptive node uses it)."""
    path = tmp_path / 'readout.npz'
    argv = ['demo', '--mode', 'offline', '--duration', '1', '--quiet', '--param',
            f'readout_path={path}', '--out', str(tmp_path / 'run')]
    assert cli.main(argv) == 0
    first, w = json.loads(capsys.readouterr().out.rsplit('}', 1)[0] + '}'), np.load(path)['slow/w']
    assert np.abs(w).max() > 0
    assert cli.main(argv) == 0          # learns on from the file, and saves again
    second = json.loads(capsys.readouterr().out.rsplit('}', 1)[0] + '}')
    assert second['ratio'] < 0.7 * first['ratio']     # (0.16 against 0.28 here)
    assert not np.array_equal(np.load(path)['slow/w'], w)
    assert cli.main(argv[:-2] + ['--neuron', 'ltc', '--out', str(tmp_path / 'r2')]) == 2
    assert 'learned on another reservoir: reservoir.neuron_model esn there, ltc here' in \
        capsys.readouterr().err


def test_the_ros_demos_pd_arm_never_touches_the_readout_file():
    """Both nodes got readout_path: the PD node loaded the file and saved over it."""
    from lnn_control.tools import demo
    extra = {'readout_path': '/tmp/r.npz'}
    pd = demo.controller_command('pd', 'pendulum', False, extra)
    adaptive = demo.controller_command('adaptive', 'pendulum', True, extra)
    assert 'readout_path:="/tmp/r.npz"' in adaptive
    assert 'readout_path:=""' in pd and 'readout_path:="/tmp/r.npz"' not in pd


def test_the_ros_demos_arms_keep_their_roles_over_a_params_file():
    """
    A file from `lnn-control params` set learning_enabled and reference.mode: topic.

    Both arms learned, and the nodes waited for a reference no one published (ratio 1.0).
    """
    from lnn_control.tools import demo
    extra = {'learning_enabled': True, 'reference.mode': 'topic', 'kp': [9.0],
             'sync_to_joint_state_stamps': False}
    pd = ' '.join(demo.controller_command('pd', 'pendulum', False, extra))
    adaptive = ' '.join(demo.controller_command('adaptive', 'pendulum', True, extra))
    assert 'learning_enabled:=false' in pd and 'learning_enabled:=true' not in pd
    assert 'learning_enabled:=true' in adaptive
    for command in (pd, adaptive):
        assert 'reference.mode:="sum_of_sines"' in command and '"topic"' not in command
        assert 'kp:=[9.0]' in command
        assert 'sync_to_joint_state_stamps:=true' in command      # lock-step's clock
        assert 'sync_to_joint_state_stamps:=false' not in command
    chosen = ' '.join(demo.controller_command('pd', 'pendulum', False,
                                              {'reference.mode': 'point_to_point'}))
    assert 'reference.mode:="point_to_point"' in chosen       # a generated mode is the user's


def test_a_params_file_with_learning_off_does_not_make_the_demo_compare_pd_with_pd(
        tmp_path, capsys):
    """Offline, the file's learning_enabled false reached the adaptive arm: ratio 1.0."""
    path = tmp_path / 'p.yaml'
    path.write_text('/**:\n  ros__parameters:\n    learning_enabled: false\n')
    assert cli.main(['demo', '--mode', 'offline', '--duration', '5', '--params-file',
                     str(path), '--out', str(tmp_path / 'run'), '--quiet']) == 0
    out = capsys.readouterr()
    assert 'learning_enabled false is not used' in out.err
    summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert summary['ratio'] < 0.9
    assert any('learning_enabled' in w for w in summary['warnings'])


@pytest.mark.parametrize('text', ['kp: [300, 20]\n',
                                  'other_node:\n  ros__parameters:\n    kp: [3.0]\n'])
def test_a_params_file_with_nothing_for_the_controller_is_refused(tmp_path, capsys, text):
    """A flat file, or one for another node, ran the demo on the defaults without a word."""
    path = tmp_path / 'p.yaml'
    path.write_text(text)
    assert cli.main(['demo', '--mode', 'offline', '--duration', '5', '--params-file',
                     str(path), '--out', str(tmp_path / 'run')]) == 2
    assert 'sets nothing for lnn_controller' in capsys.readouterr().err
    assert not (tmp_path / 'run').exists()
    path.write_text('lnn_controller:\n  ros__parameters: {}\n')     # ours, empty: taken
    assert cli.main(['demo', '--mode', 'offline', '--duration', '5', '--params-file',
                     str(path), '--out', str(tmp_path / 'run'), '--quiet']) == 0


DEGREE_RANGE = """<mujoco><option timestep="0.002"/><worldbody>
  <body><joint name="shoulder" type="hinge" axis="0 1 0" damping="0.05"/>
    <geom type="capsule" fromto="0 0 0 0 0 -0.3" size="0.03" mass="1"/>
    <body pos="0 0 -0.3"><joint name="elbow" type="hinge" axis="0 1 0" range="-1.5 1.5"
        limited="true" damping="0.02"/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.25" size="0.025" mass="0.5"/></body></body>
</worldbody><actuator><motor joint="shoulder" ctrlrange="-20 20" ctrllimited="true"/>
  <motor joint="elbow" ctrlrange="-10 10" ctrllimited="true"/></actuator></mujoco>"""


def test_demo_says_when_a_range_in_degrees_shrank_the_reference(tmp_path, capsys):
    """
    range="-1.5 1.5" without <compiler angle="radian"/> is +-1.5 degrees in MJCF.

    The reference was fitted into it (amplitude 0.021 instead of 0.5) without a word, and
    summary.json did not say which reference ran.
    """
    model = tmp_path / 'arm.xml'
    model.write_text(DEGREE_RANGE)
    out = tmp_path / 'run'
    assert cli.main(['demo', '--mode', 'offline', '--plant', str(model), '--duration', '5',
                     '--out', str(out), '--quiet']) == 0
    assert 'MJCF reads hinge ranges in degrees' in capsys.readouterr().err
    summary = json.loads((out / 'summary.json').read_text())
    assert any('elbow: its range in the model' in w for w in summary['warnings'])
    assert summary['controller']['reference.amplitude'] == pytest.approx([0.5, 0.020944])
    # an amplitude the user chose small, in a wide range (in radians): no such warning
    wide = tmp_path / 'wide.xml'
    wide.write_text(DEGREE_RANGE.replace('<mujoco>', '<mujoco><compiler angle="radian"/>')
                    .replace('range="-1.5 1.5"', 'range="-3 3"'))
    assert cli.main(['demo', '--mode', 'offline', '--plant', str(wide), '--duration', '5',
                     '--param', 'reference.amplitude=0.04', '--out', str(out), '--quiet']) == 0
    assert 'degrees' not in capsys.readouterr().err


def test_the_demo_names_a_joint_learning_left_worse_than_pd():
    """A 7-joint arm's base joint was 1.47x PD over 10 s; the pooled figure read 0.13."""
    from lnn_control import cli
    summary = {'worst_window_ratio': 0.13, 'worst_window_ratio_per_joint': [1.47, 0.2, 0.9]}
    warnings = cli._outcome_warnings(summary, ['joint1', 'joint2', 'joint3'])
    assert len(warnings) == 1 and warnings[0].startswith('joint1: over its worst 10 s window '
                                                         'the error was 1.47x that of PD')
    assert cli._outcome_warnings({'worst_window_ratio': 1.2}, ['q'])[0].startswith('q: ')
    assert cli._outcome_warnings({'worst_window_ratio': float('nan')}, ['q']) == []


def test_the_model_warnings_skip_a_joint_without_kp():
    """A joint with kp 0 (damping only) has no position loop to hold off: it read 'inf m'."""
    from lnn_control import cli, zoo
    from lnn_control.plants import Plant
    plant = Plant(zoo.model_name('lift'))
    assert any('gravity takes' in w for w in cli._model_warnings(plant, [100.0]))
    assert cli._model_warnings(plant, [0.0]) == []


def test_an_actuator_too_weak_to_hold_the_joint_is_named_not_a_sag():
    """Both arms fell (0.88 rad RMS) while the only warning said PD holds it 0.24 rad off."""
    from lnn_control import cli, zoo
    from lnn_control.plants import Plant
    plant = Plant(zoo.model_name('lift'))
    need = abs(plant.design_gravity()[0])
    weak = cli._model_warnings(plant, [100.0], [0.5 * need])
    assert 'cannot hold the joint' in weak[0] and not any('off its target (gravity' in w
                                                          for w in weak), weak
    strong = cli._model_warnings(plant, [100.0], [2.0 * need])
    assert any('off its target (gravity' in w for w in strong)
    assert not any('cannot hold' in w for w in strong)


def test_a_file_that_cannot_be_written_is_an_error_line_not_a_traceback(monkeypatch, capsys):
    """A plot written to a read-only file system ended in an OSError traceback."""
    from lnn_control import cli

    def read_only(args):
        raise OSError(30, 'Read-only file system', 'x.png')
    monkeypatch.setattr(cli, '_plot', read_only)
    assert cli.main(['plot', 'run.mcap', '--out', 'x.png']) == 2
    assert capsys.readouterr().err.startswith('lnn-control: error: [Errno 30] Read-only')


@pytest.mark.parametrize('argv, fragment', [
    (['gains', '--plant', 'pendulum', '--pose', '1e300'], '--pose: at most'),
    (['gains', '--plant', 'pendulum', '--max-reference-hz', '1e-300'],
     '--max-reference-hz: at least'),
    (['gains', '--plant', 'pendulum', '--damping-ratio', '1e-300'], '--damping-ratio: at least'),
    (['zoo', '--random', '100000000', '--list'], '--random: at most'),
    (['zoo', '--random', '3', '--random-seed', '99999999999999999999', '--list'],
     '--random-seed: at most'),
    (['params', '--format', 'yaml', '--plant', 'arm2', '--node', 'simulator', '--param',
      'nosuch=1'],
     'nosuch: not a parameter of lnn_sim'),
    (['params', '--format', 'yaml', '--plant', 'arm2', '--node', 'simulator', '--param',
      'kp=1'],
     'kp: not a parameter of lnn_sim'),
])
def test_options_a_user_mistypes_are_refused_before_any_work(argv, fragment, capsys):
    """They gave garbage with exit 0, ran for minutes, or were dropped without a word."""
    from lnn_control import cli
    assert cli.main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_params_for_the_simulator_take_its_parameters(capsys):
    import yaml
    from lnn_control import cli
    assert cli.main(['params', '--format', 'yaml', '--plant', 'arm2', '--node', 'simulator',
                     '--param', 'payload_scale=2.5']) == 0
    assert yaml.safe_load(capsys.readouterr().out)['/**/lnn_sim']['ros__parameters'][
        'payload_scale'] == 2.5


def test_other_joints_for_a_bundled_plant_say_which_values_to_give():
    """One 'needs one value per joint' per parameter the user never set, and no why."""
    from lnn_control import closed_loop as CL
    with pytest.raises(ValueError) as refused:
        CL.plant_params('arm2', {'joints': ['joint2']})
    assert str(refused.value).count('per joint') == 1 and 'kp, kd, command_limit' in str(
        refused.value)
    given = CL.plant_params('arm2', {'joints': ['joint2'], 'kp': [30.0], 'kd': [2.0],
                                     'command_limit': [5.0], 'reference.amplitude': [0.3]})
    assert given['joints'] == ['joint2']
    assert CL.plant_params('arm2', {'joints': ['joint1', 'joint2']})['kp']    # the same: kept


@pytest.mark.parametrize('plant', ['pendulum', 'zoo/pendulum_tiny', 'MODEL'])
@pytest.mark.parametrize('value', ['5', 'true'])
def test_joints_that_are_not_a_list_are_refused_with_a_reason(plant, value, tmp_path, capsys):
    """--param joints=5 (or joints: 5 in a file) ended in a TypeError traceback."""
    plant = os.path.join(os.path.dirname(cli.__file__), 'models', 'arm2.xml') \
        if plant == 'MODEL' else plant
    out = tmp_path / 'run'
    assert cli.main(['demo', '--mode', 'offline', '--duration', '1', '--plant', plant,
                     '--param', f'joints={value}', '--out', str(out)]) == 2
    assert 'joints must be a list of strings' in capsys.readouterr().err
    assert not out.exists()
    path = tmp_path / 'p.yaml'
    path.write_text(f'/**:\n  ros__parameters:\n    joints: {value}\n')
    assert cli.main(['demo', '--mode', 'offline', '--duration', '1', '--plant', plant,
                     '--params-file', str(path), '--out', str(out)]) == 2
    assert 'joints must be a list of strings' in capsys.readouterr().err
    assert cli.main(['params', '--format', 'yaml', '--plant', plant,
                     '--param', f'joints={value}']) == 2
    assert 'joints must be a list of strings' in capsys.readouterr().err


def test_a_readout_path_that_cannot_be_saved_is_refused_before_the_run(tmp_path, capsys):
    """
    Its directory a file: the offline demo ran, then failed to save the readout.

    summary.json and tracking.png were never written: the whole run was lost.
    """
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    out = tmp_path / 'run'
    assert cli.main(['demo', '--mode', 'offline', '--duration', '1', '--quiet', '--param',
                     f'readout_path={blocker}/r.npz', '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert f'readout_path {blocker}/r.npz: its directory {blocker} exists and is not a ' \
        'directory' in err, err
    assert not out.exists()


@pytest.mark.parametrize('value', ['5', 'yes_please', '[true]'])
def test_a_learning_enabled_that_is_not_a_bool_is_refused(value, tmp_path, capsys):
    """learning_enabled=5 ran with 'learning_enabled false is not used' (exit 0)."""
    out = tmp_path / 'run'
    assert cli.main(['demo', '--mode', 'offline', '--duration', '1', '--quiet', '--param',
                     f'learning_enabled={value}', '--out', str(out)]) == 2
    assert 'learning_enabled must be a bool' in capsys.readouterr().err
    assert not out.exists()


def test_a_params_file_that_is_not_text_is_named_in_the_refusal(tmp_path, capsys):
    """Bytes that are not UTF-8 said only "'utf-8' codec can't decode byte 0xff": no file."""
    path = tmp_path / 'p.yaml'
    path.write_bytes(b'\x00\xff\xfe')
    out = tmp_path / 'run'
    assert cli.main(['demo', '--mode', 'offline', '--duration', '1', '--params-file',
                     str(path), '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert f'{path}: not YAML (' in err and "can't decode byte 0xff" in err, err
    assert not out.exists()


@pytest.mark.parametrize('param, fragment', [
    ('initial_positions=[0.1,0.2,0.3]', 'initial_positions needs 0, 1 or 2 values'),
    ('initial_positions=[3.0]', 'cart 3 (range -2 to 2)'),
    ('joints=[elbow]', "no hinge or slide joint named ['elbow']"),
    ('model=no_such_plant', 'unknown plant'),
])
def test_params_for_the_simulator_refuse_what_lnn_sim_refuses(param, fragment, capsys):
    """They were written with exit 0, and lnn_sim started on the file exited 1."""
    plant = 'arm2' if param.startswith('initial_positions=[0.1') else 'cartpole'
    assert cli.main(['params', '--format', 'yaml', '--node', 'simulator', '--plant', plant,
                     '--param', param]) == 2
    out = capsys.readouterr()
    assert fragment in out.err and not out.out, out.err


@pytest.mark.parametrize('command', [['gains'], ['demo', '--mode', 'offline', '--duration', '1'],
                                     ['params', '--format', 'yaml', '--node', 'simulator']])
def test_a_model_with_a_zero_timestep_is_refused_with_a_reason(command, tmp_path, capsys):
    """<option timestep="0"/> compiled, then gains and demo ended in a ZeroDivisionError."""
    path = tmp_path / 'ts0.xml'
    path.write_text('<mujoco><option timestep="0"/><worldbody><body><joint name="j" '
                    'type="hinge"/><geom size="0.1" mass="1"/></body></worldbody><actuator>'
                    '<motor joint="j" ctrlrange="-1 1" ctrllimited="true"/></actuator></mujoco>')
    out = ['--out', str(tmp_path / 'run')] if command[0] == 'demo' else []
    assert cli.main(command + ['--plant', str(path)] + out) == 2
    assert f'{path}: <option timestep> must be > 0; got 0' in capsys.readouterr().err
