"""Plant wrapper: bundled models, effort limits, payload scaling, mass matrix."""
from lnn_control.plants import honest_gains, model_path, pd_gains, Plant, PLANTS, unmeasured_modes
import numpy as np
import pytest

pytestmark = pytest.mark.unit

SPEC = {  # joints, all 1-dof joints, effort limits
    'pendulum': (('joint1',), ('joint1',), [20.0]),
    'arm2': (('joint1', 'joint2'), ('joint1', 'joint2'), [40.0, 20.0]),
    'cartpole': (('cart',), ('cart', 'pole'), [50.0]),
}


@pytest.fixture(params=PLANTS)
def plant(request):
    return Plant(request.param)


@pytest.mark.parametrize('name', PLANTS)
def test_bundled_plants_match_spec(name):
    plant = Plant(name)
    joints, all_joints, limits = SPEC[name]
    assert plant.joint_names == joints
    assert plant.all_joint_names == all_joints
    assert plant.n == len(joints)
    assert plant.timestep == pytest.approx(0.001)
    np.testing.assert_allclose(plant.effort_limit, limits)


def test_rest_is_equilibrium(plant):
    plant.step(np.zeros(plant.n), 0.5)
    assert plant.time == pytest.approx(0.5)
    np.testing.assert_allclose(plant.all_positions(), 0.0, atol=1e-9)
    np.testing.assert_allclose(plant.all_velocities(), 0.0, atol=1e-9)


def test_positive_effort_moves_positive(plant):
    for i in range(plant.n):
        plant.reset()
        u = np.zeros(plant.n)
        u[i] = 1.0
        plant.step(u, 0.05)
        assert plant.position()[i] > 0 and plant.velocity()[i] > 0


def test_effort_is_clipped(plant):
    plant.step(np.full(plant.n, 1e6), 0.001)
    np.testing.assert_allclose(plant.effort(), plant.effort_limit)
    plant.step(np.full(plant.n, -1e6), 0.001)
    np.testing.assert_allclose(plant.effort(), -plant.effort_limit)
    efforts = plant.all_efforts()
    assert efforts.shape == (len(plant.all_joint_names),)
    if plant.all_joint_names == ('cart', 'pole'):
        np.testing.assert_allclose(efforts, [-50.0, 0.0])


def test_step_rounds_duration_to_physics_steps():
    p = Plant('pendulum')
    p.step(np.zeros(1), 0.01)
    assert p.time == pytest.approx(0.01)
    p.step(np.zeros(1), 0.0)  # at least one step
    assert p.time == pytest.approx(0.011)
    with pytest.raises(ValueError):
        p.step(np.array([np.nan]), 0.01)


def test_reset_sets_state_and_keeps_payload():
    p = Plant('arm2')
    p.payload_scale = 1.5
    p.step(np.ones(2), 0.1)
    p.reset(q=[0.3, -0.2], qd=[0.1, 0.0])
    np.testing.assert_allclose(p.position(), [0.3, -0.2])
    np.testing.assert_allclose(p.velocity(), [0.1, 0.0])
    np.testing.assert_allclose(p.effort(), 0.0)
    assert p.time == 0.0 and p.payload_scale == 1.5


def test_accessors_return_copies():
    p = Plant('pendulum')
    p.position()[:] = 5.0
    p.effort()[:] = 5.0
    assert p.position()[0] == 0.0 and p.effort()[0] == 0.0


def test_default_payload_body_is_end_link():
    assert Plant('pendulum').payload_body == 'link1'
    assert Plant('arm2').payload_body == 'link2'
    assert Plant('cartpole').payload_body == 'pole'


@pytest.mark.parametrize('actuator, limit, applied', [
    # (the effort the controller may command both ways; what -20 applies)
    ('<motor joint="hinge" ctrllimited="true" ctrlrange="-5 30"/>', 5.0, -5.0),
    ('<motor joint="hinge" gear="-2" ctrllimited="true" ctrlrange="-5 15"/>', 10.0, -10.0),
    ('<motor joint="hinge" ctrllimited="true" ctrlrange="-15 15" forcelimited="true" '
     'forcerange="-3 3"/>', 3.0, -3.0),
])
def test_the_effort_limit_is_what_every_range_lets_the_actuator_apply(
        tmp_path, actuator, limit, applied):
    """Only ctrlrange's upper end counted: 30 commanded, 5 or 3 applied, 20 reported."""
    plant = _plant_with(tmp_path, actuator)
    np.testing.assert_allclose(plant.effort_limit, [limit])
    plant.step(np.array([-20.0]), 0.001)
    np.testing.assert_allclose(plant.data.qfrc_actuator[plant._vadr], [applied])
    np.testing.assert_allclose(plant.effort(), [applied])     # reported = applied
    with pytest.raises(ValueError, match='cannot push both ways'):
        _plant_with(tmp_path, '<motor joint="hinge" ctrllimited="true" ctrlrange="0 10"/>')


def test_a_joint_driven_by_two_actuators_is_refused(tmp_path):
    """The last one was driven, the other ignored (a hidden servo kept pulling)."""
    with pytest.raises(ValueError, match=r'several actuators drive hinge \(servo, main\)'):
        _plant_with(tmp_path, '<position name="servo" joint="hinge" kp="100"/>'
                              '<motor name="main" joint="hinge" ctrllimited="true" '
                              'ctrlrange="-5 5"/>')


_ARM_AND_TABLE = """<mujoco>
  <option timestep="{}"/>
  <worldbody>
    <body name="l1"><joint name="j1" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.4" size="0.03" mass="1"/>
      <body name="l2" pos="0 0 -0.4"><joint axis="0 1 0"/><joint name="j2" type="slide"
        range="0 0.3" axis="0 0 1"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.3" size="0.03" mass="0.5"/></body></body>
    <body name="table" pos="1 0 0"><geom type="box" size="0.3 0.3 0.02"/></body>
  </worldbody>
  <actuator><motor joint="j1" ctrllimited="true" ctrlrange="-20 20"/>
    <motor joint="j2" ctrllimited="true" ctrlrange="-20 20"/></actuator>
</mujoco>"""


def test_a_users_model_with_a_table_an_unnamed_joint_and_a_ranged_slide(tmp_path):
    path = tmp_path / 'arm.xml'
    path.write_text(_ARM_AND_TABLE.format(0.002))
    plant = Plant(str(path))
    assert plant.payload_body == 'l2'       # not the table defined after the arm
    # an unnamed passive joint gets a name (JointState names every joint; '' twice was refused)
    assert plant.all_joint_names == ('j1', 'unnamed_joint_1', 'j2')
    np.testing.assert_allclose(plant.position_range, [[-np.inf, np.inf], [0.0, 0.3]])
    assert plant.steps_per(0.01) == 5
    with pytest.raises(ValueError, match='positive multiple of the model timestep 0.002'):
        plant.steps_per(0.005)


def test_payload_scale_is_relative_to_nominal(plant):
    b = plant.model.nbody - 1
    m0, i0 = plant.model.body_mass[b], plant.model.body_inertia[b].copy()
    plant.payload_scale = 2.0
    plant.payload_scale = 2.0
    assert plant.payload_scale == 2.0
    assert plant.model.body_mass[b] == pytest.approx(2 * m0)
    np.testing.assert_allclose(plant.model.body_inertia[b], 2 * i0)
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError):
            plant.payload_scale = bad
    assert plant.payload_scale == 2.0


def test_friction_scale_is_relative_to_nominal():
    plant = Plant('zoo/pendulum_heavy_coulomb')
    f0 = plant.model.dof_frictionloss.copy()
    assert f0.max() > 0
    plant.friction_scale = 3.0
    plant.friction_scale = 3.0
    np.testing.assert_allclose(plant.model.dof_frictionloss, 3 * f0)
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError):
            plant.friction_scale = bad
    assert plant.friction_scale == 3.0


def test_mass_matrix_grows_with_payload(plant):
    m1 = plant.mass_matrix()
    assert m1.shape == (plant.n, plant.n)
    plant.payload_scale = 2.0
    assert np.all(np.diag(plant.mass_matrix()) > np.diag(m1))


def test_nominal_inertia_pendulum_and_live_state_untouched():
    p = Plant('pendulum')
    p.reset(q=[0.7], qd=[0.2])
    p.payload_scale = 3.0
    inertia = p.nominal_inertia()
    assert inertia == pytest.approx(0.086, rel=0.1)
    np.testing.assert_allclose(p.position(), [0.7])
    np.testing.assert_allclose(p.velocity(), [0.2])


def test_joint_selection_and_validation():
    p = Plant('arm2', joints=['joint2'])
    assert p.joint_names == ('joint2',) and p.effort_limit.tolist() == [20.0]
    with pytest.raises(ValueError, match='joint1'):
        Plant('arm2', joints=['elbow'])
    with pytest.raises(ValueError, match='cart'):
        Plant('cartpole', joints=['pole'])  # passive joint
    with pytest.raises(ValueError, match='duplicate'):
        Plant('arm2', joints=['joint1', 'joint1'])
    with pytest.raises(ValueError, match='link1'):
        Plant('pendulum', payload_body='nope')


def test_model_path():
    for name in PLANTS:
        path = model_path(name)
        assert path.endswith(f'{name}.xml') and model_path(path) == path
    with pytest.raises(ValueError, match='pendulum.*arm2.*cartpole'):
        model_path('double_pendulum')


def test_pd_gains():
    kp, kd = pd_gains(np.array([0.086, 1.0]), 10.0, 0.8)
    np.testing.assert_allclose(kp, [8.6, 100.0])
    np.testing.assert_allclose(kd, [2 * 0.8 * 10 * 0.086, 16.0])


_ONE_HINGE = """<mujoco>
  <option timestep="0.001"/>
  <worldbody>
    <body name="link"><joint name="hinge" type="hinge" axis="0 1 0" damping="0.1"/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.03" mass="1"/></body>
  </worldbody>
  <actuator>{}</actuator>
</mujoco>"""


def _plant_with(tmp_path, actuator):
    path = tmp_path / 'plant.xml'
    path.write_text(_ONE_HINGE.format(actuator))
    return Plant(str(path))


@pytest.mark.parametrize('gear', [1.0, 10.0, -1.0])
def test_effort_is_at_the_joint_whatever_the_motors_gear(tmp_path, gear):
    """A gear-10 motor with ctrl +-3 is a joint effort limit of 30 (it was 3, gains 10x off)."""
    plant = _plant_with(tmp_path, f'<motor joint="hinge" gear="{gear}" ctrllimited="true" '
                                  f'ctrlrange="{-30 / abs(gear)} {30 / abs(gear)}"/>')
    np.testing.assert_allclose(plant.effort_limit, [30.0])
    plant.step(np.array([2.0]), 0.001)
    np.testing.assert_allclose(plant.data.qfrc_actuator[plant._vadr], [2.0])
    plant.step(np.array([100.0]), 0.001)
    np.testing.assert_allclose(plant.effort(), [30.0])


@pytest.mark.parametrize('actuator, says', [
    ('<position joint="hinge" kp="50"/>', 'not effort motors'),
    ('<velocity joint="hinge" kv="5"/>', 'not effort motors'),
    ('<motor joint="hinge" gear="0"/>', 'not effort motors'),
    ('', 'no joint to control; actuated (a <motor> on a hinge or slide joint): none; '
         'hinge/slide joints: hinge'),
])
def test_what_is_not_an_effort_motor_is_refused_with_a_reason(tmp_path, actuator, says):
    """A position servo commanded as an effort diverged (NaN accelerations)."""
    with pytest.raises(ValueError, match=says.replace('(', r'\(').replace(')', r'\)')):
        _plant_with(tmp_path, actuator)


def test_an_empty_joints_list_is_refused_as_empty_not_as_a_model_without_motors():
    with pytest.raises(ValueError, match='joints is empty: name the ones to control; '
                                         'actuated .*: joint1'):
        Plant('pendulum', joints=[])


def test_no_mode_is_judged_in_a_ball_joint(tmp_path):
    """A neutral ball at the tip read 0.35 Hz, damping ratio -0.71: a mode that does not exist."""
    path = tmp_path / 'ball.xml'
    path.write_text("""<mujoco><option timestep="0.002"/><worldbody>
      <body name="l1"><joint name="j1" axis="0 1 0" damping="0.1"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="1"/>
        <body name="l2" pos="0.3 0 0"><joint name="j2" axis="0 1 0" damping="0.1"/>
          <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="0.5"/>
          <body name="tool" pos="0.3 0 0"><joint name="wrist" type="ball"/>
            <geom type="sphere" size="0.03" mass="0.1"/></body></body></body>
    </worldbody><actuator><motor joint="j1" ctrlrange="-30 30"/>
      <motor joint="j2" ctrlrange="-15 15"/></actuator></mujoco>""")
    plant = Plant(str(path))
    kp, kd = honest_gains(plant)
    assert unmeasured_modes(plant, kp, kd, 2.2) == []
    # ... and the user is told it was not checked (an empty report read as a clean one)
    from lnn_control.plants import unjudged_joints, unmeasured_mode_warnings
    assert unjudged_joints(plant) == ['wrist']
    said = unmeasured_mode_warnings([], 2.2, unjudged=unjudged_joints(plant))
    assert len(said) == 1 and said[0].startswith('wrist: ball or free joints')
    assert unjudged_joints(Plant('arm2')) == []
