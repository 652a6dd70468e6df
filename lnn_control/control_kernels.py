"""
Numba kernels of the controller's tick around the learning core.

Input assembly of feedback-error learning, the bounded command, the automatic
input scales, and the statistics of the learning supervisor and the plant-change
detector: each a few dozen flops per joint, fused into one kernel apiece so the
tick stays free of Python-level array temporaries. Like ``kernels.py``, every
kernel writes into arrays the caller preallocated.
"""
from __future__ import annotations

from numba import njit
import numpy as np

# Width, in normalised velocity, of the smooth sign of the desired velocity that
# the feedforward uses for Coulomb friction (which flips with the motion).
FRICTION_BAND = 0.05


@njit(cache=True)
def feedback_error_inputs(io, scale, kp, kd, pd, u):
    """
    PD output and reservoir inputs of one feedback-error-learning tick.

    io rows: q, qd, q_d, qd_d, qdd_d. scale: position, velocity, acceleration
    normalisers (3n). u blocks: q_d, qd_d, qdd_d (normalised), sin q_d,
    cos q_d, tanh(qd_d / (FRICTION_BAND scale)) -- gravity- and friction-like
    terms a readout cannot build well from smooth features -- then the
    measured q, qd (normalised).
    """
    n = io.shape[1]
    for j in range(n):
        q, qd, q_d, qd_d, qdd_d = io[0, j], io[1, j], io[2, j], io[3, j], io[4, j]
        pd[j] = kp[j] * (q_d - q) + kd[j] * (qd_d - qd)
        u[j] = q_d / scale[j]
        u[n + j] = qd_d / scale[n + j]
        u[2 * n + j] = qdd_d / scale[2 * n + j]
        u[3 * n + j] = np.sin(q_d)
        u[4 * n + j] = np.cos(q_d)
        u[5 * n + j] = np.tanh(qd_d / (FRICTION_BAND * scale[n + j]))
        u[6 * n + j] = q / scale[j]
        u[7 * n + j] = qd / scale[n + j]


# Layout of the learning supervisor's state vector (see supervisor.py): statistics and
# timers, cleared at every change of state (entries below SV_CLEARED), then its state and
# settings.
SV_PD = 0       # EWMA of |u_pd / kp|^2: the error left with the feedforward
SV_TOTAL = 1    # EWMA of |u / kp|^2, u the applied command: the error PD alone would leave
SV_PUSH = 2     # EWMA of the fraction of ticks the feedforward drives a saturation
SV_RHO = 3      # the estimated error ratio to PD alone (the larger of the two below)
SV_MAX = 4      # largest SV_RHO since the supervisor last cleared it
SV_PD_LOW = 5   # SV_PD and SV_TOTAL of the low-passed efforts
SV_TOTAL_LOW = 6
SV_TICKS = 7    # ticks in the current state
SV_INTERVAL = 8  # ticks since the last snapshot candidate
SV_FF_HIGH = 9  # EWMA of |u_ff / kp|^2 above the closed loop's bandwidth
SV_ECHO = 10    # the echo figure: sqrt(SV_FF_HIGH / SV_TOTAL_LOW)
SV_ECHO_MAX = 11  # largest SV_ECHO since the supervisor last cleared it
SV_WHY = 12     # which figure made this tick harmful: one of SV_WHY_* (0: none)
SV_CLEARED = 13
SV_STATE = 13   # 0 learning, 1 frozen, 2 PD only
SV_ALPHA = 14   # EWMA coefficient, dt / window_s (at most 1)
SV_TRIP = 15    # trip_ratio
SV_WINDOW = 16  # window_s in ticks (at least 1)
SV_HOLD = 17    # hold_s in ticks (at least one window)
SV_HOLD_FACTOR = 18   # this PD-only hold in hold_s
SV_ARMED = 19   # 1: the echo figure is judged (set by the supervisor, see supervisor.py)
SV_CHATTER = 20  # lowest lag-1 correlation of a joint's command (-1: flips every tick)
SV_CHATTER_JOINT = 21   # ... on this joint
SV_PUSH_BASE = 22   # the push fraction the limits alone account for (see supervisor.py)
SV_SIZE = 23
SV_PUSH_TRIP = 0.25   # the feedforward drives saturation this often (over the base): not credible
SV_GROSS = 2.0        # rho this many times the trip ratio is judged after a quarter window
SV_ECHO_FACTOR = 1.3  # the echo figure trips at this many times the trip ratio
# Efforts below this fraction of the command limit are below what an actuator resolves:
# the figures add its square to every power they compare. Without it a robot resting
# where it needs no effort (a hanging pendulum, a SCARA) compared efforts of 1e-20,
# and rho, a ratio of two such, tripped and wiped what had been learned.
SV_EFFORT_FLOOR = 1e-3
SV_WHY_RHO, SV_WHY_ECHO, SV_WHY_PUSH = 1, 2, 3
# What ``supervise`` asks of the supervisor (0: nothing this tick).
SV_ROLLBACK, SV_SNAPSHOT, SV_TO_PD_ONLY, SV_RESUME = 1, 2, 3, 4


@njit(cache=True)
def supervise(pd, ff, command, gains, lp, ff_at_bound, refused, st):
    """
    One tick of the learning supervisor: update its statistics, say what it must do.

    ``gains`` rows: command limit, 1/kp, the low-pass coefficients. Harmful: rho > trip
    or (armed) the echo figure > SV_ECHO_FACTOR trip after a full window in this state,
    or the push fraction > SV_PUSH_TRIP + st[SV_PUSH_BASE] after a quarter window (its
    own averaging time).

    Every power compared has the effort floor's added (``SV_EFFORT_FLOOR``): at rest
    where no effort is needed, rho reads 1 and the echo figure 0, and the lag-1 figure
    is not judged. rho is the larger of two estimates: from the efforts as they are
    (quick) and from the
    efforts low-passed per joint (``lp`` (6, n) holds the filter states, then the
    command's last value and the averages of its lag-1 product and power): effort above the
    closed loop's bandwidth does not move the plant, and a feedforward chattering there
    would otherwise inflate the denominator and hide the damage. The echo figure: the
    feedforward's power above that bandwidth (``lp`` row 2 low-passes it) over the
    low-passed command's: a self-excited oscillation of the learning loop. A tick
    'pushes' when the feedforward is at its bound, or a joint's command is at its limit
    with the feedforward (more than a quarter of the limit) pushing the same way.
    Returns SV_ROLLBACK (harmful or ``refused`` while learning), SV_SNAPSHOT (two good
    windows of learning), SV_TO_PD_ONLY (harmful while frozen), SV_RESUME (the hold is
    over) or 0, and leaves in st[SV_WHY] which figure was harmful (SV_WHY_*, for the
    log); the rare events are the caller's, the every-tick part is all here.
    """
    if (lp.shape[0] < 6 or lp.shape[1] < pd.shape[0] or gains.shape[0] < 3
            or gains.shape[1] < pd.shape[0] or st.shape[0] < SV_SIZE):
        raise ValueError('supervise: lp must be (6, n) and gains (3, n)')
    a = 0.0
    b = 0.0
    a_low = 0.0
    b_low = 0.0
    high = 0.0
    floor = 0.0         # the effort floor's power, in the error units (SV_EFFORT_FLOOR)
    push = 1.0 if ff_at_bound else 0.0
    alpha = st[SV_ALPHA]
    chatter, chatter_joint = 1.0, 0
    saturated = False
    for j in range(pd.shape[0]):
        limit, inv_kp, beta = gains[0, j], gains[1, j], gains[2, j]
        floor_j = SV_EFFORT_FLOOR * limit * inv_kp
        floor += floor_j * floor_j
        e = pd[j] * inv_kp
        t = command[j] * inv_kp
        a += e * e
        b += t * t
        lp[0, j] += beta * (e - lp[0, j])
        lp[1, j] += beta * (t - lp[1, j])
        f = ff[j] * inv_kp
        lp[2, j] += beta * (f - lp[2, j])
        high += (f - lp[2, j]) * (f - lp[2, j])
        a_low += lp[0, j] * lp[0, j]
        b_low += lp[1, j] * lp[1, j]
        if abs(command[j]) >= limit:
            saturated = True
            if ff[j] * command[j] > 0.25 * limit * limit:
                push = 1.0
        # the command's lag-1 correlation: near -1 when the loop chatters at Nyquist
        lp[4, j] += alpha * (t * lp[3, j] - lp[4, j])
        lp[5, j] += alpha * (t * t - lp[5, j])
        lp[3, j] = t
        if lp[5, j] > floor_j * floor_j and lp[4, j] < chatter * lp[5, j]:
            chatter, chatter_joint = lp[4, j] / lp[5, j], j
    st[SV_CHATTER], st[SV_CHATTER_JOINT] = chatter, chatter_joint
    # Limits known to be below what the motion needs (a push base): a tick at the limit
    # says nothing about the feedforward (PD alone would be there too), so rho skips it.
    if not (saturated and st[SV_PUSH_BASE] > 0.0):
        st[SV_PD] += alpha * (a - st[SV_PD])
        st[SV_TOTAL] += alpha * (b - st[SV_TOTAL])
        st[SV_PD_LOW] += alpha * (a_low - st[SV_PD_LOW])
        st[SV_TOTAL_LOW] += alpha * (b_low - st[SV_TOTAL_LOW])
    st[SV_FF_HIGH] += alpha * (high - st[SV_FF_HIGH])
    low = st[SV_TOTAL_LOW] + floor
    echo = np.sqrt(st[SV_FF_HIGH] / low) if low > 0.0 else 0.0
    st[SV_ECHO] = echo
    if echo > st[SV_ECHO_MAX]:
        st[SV_ECHO_MAX] = echo
    # pushing into saturation does damage fast: a four times shorter average
    st[SV_PUSH] += min(1.0, 4.0 * alpha) * (push - st[SV_PUSH])
    total = st[SV_TOTAL] + floor
    rho = np.sqrt((st[SV_PD] + floor) / total) if total > 0.0 else 1.0
    if low > 0.0:
        rho = max(rho, np.sqrt((st[SV_PD_LOW] + floor) / low))
    st[SV_RHO] = rho
    if rho > st[SV_MAX]:
        st[SV_MAX] = rho
    ticks = st[SV_TICKS] + 1.0
    st[SV_TICKS] = ticks
    # each figure is judged once its own average has filled: rho's and the echo's
    # window, the push fraction's quarter window (saturation does its damage fast)
    full, quarter = ticks >= st[SV_WINDOW], 4.0 * ticks >= st[SV_WINDOW]
    why = 0
    if rho > st[SV_TRIP] and (full or (quarter and rho > SV_GROSS * st[SV_TRIP])):
        why = SV_WHY_RHO
    elif full and st[SV_ARMED] == 1.0 and echo > SV_ECHO_FACTOR * st[SV_TRIP]:
        why = SV_WHY_ECHO
    elif quarter and st[SV_PUSH] > SV_PUSH_TRIP + st[SV_PUSH_BASE]:
        why = SV_WHY_PUSH
    st[SV_WHY] = why
    harmful = why != 0
    state = st[SV_STATE]
    if state == 0.0:
        if refused or harmful:
            return SV_ROLLBACK
        st[SV_INTERVAL] += 1.0
        return SV_SNAPSHOT if st[SV_INTERVAL] >= 2.0 * st[SV_WINDOW] else 0
    if state == 1.0 and harmful:
        return SV_TO_PD_ONLY
    hold = st[SV_HOLD] if state == 1.0 else st[SV_HOLD] * st[SV_HOLD_FACTOR]
    return SV_RESUME if ticks >= hold else 0


# Layout of the change detector's state vector (see change_detector.py).
CD_SHORT = 0    # EWMA of |e / kp|^2 over the short window
CD_BASE = 1     # the typical level: an upper quantile of log(CD_SHORT), recently
CD_CUSUM = 2    # the CUSUM statistic [s]
CD_TICKS = 3    # ticks observed since the last (re)start
CD_WEIGHT = 4   # weight of the next histogram entry (grows instead of decaying the rest)
CD_TOTAL = 5    # total weight in the histogram
CD_TOP = 6      # highest histogram bin filled since the last (re)start
CD_CLEARED = 7  # entries below this restart with the detector; the settings follow
CD_A_SHORT, CD_A_HIST, CD_WARM, CD_QUANTILE, CD_LOG_EXCESS, CD_DT, CD_THRESHOLD = range(7, 14)
CD_ENABLED = 14  # 1.0: the test runs (the forward model's kernel reads it here)
CD_SIZE = 15
# (Kernels compile these indices in as constants, and numba checks only a kernel's own
# file for a stale cache: after changing them here, delete the cached kernels of the
# files that import them, forward_kernels.py's too: `make clean`, or the *.nbi / *.nbc
# files in lnn_control/__pycache__.)
# The histogram of log(CD_SHORT) the typical level is read from.
CD_LOG_LOW, CD_LOG_HIGH, CD_BINS = -46.0, 18.0, 256


@njit(cache=True)
def change_cusum(err, inv_kp, a_short, a_hist, warm_ticks, quantile, log_excess, dt,
                 threshold, st, hist):
    """
    One tick of the plant-change detector; True when it fires.

    l = log(short-term power of err / kp). Its typical level b is the
    ``quantile`` of an exponentially weighted histogram of l (``a_hist`` per
    tick, so it follows the last few seconds up and down alike), so the bursts
    of a steady error at the hard parts of a reference sit below it. Page's
    CUSUM g <- max(0, g + (l - b - log_excess) dt) fires when g exceeds
    ``threshold``. No test during the first ``warm_ticks``; afterwards the
    histogram learns only while g = 0, so a change cannot raise b before it is
    detected. Firing starts a new warm-up: the re-learning a detection
    triggers is a transient of its own, not another change. A non-finite
    error is ignored. The histogram's decay is folded into a growing entry
    weight, and the quantile is read from the top, so a tick costs a few
    bins, not all of them.
    """
    x = 0.0
    for j in range(err.shape[0]):
        e = err[j] * inv_kp[j]
        x += e * e
    if not np.isfinite(x):
        return False
    ticks = st[CD_TICKS] + 1.0
    st[CD_TICKS] = ticks
    if ticks == 1.0:
        st[CD_SHORT] = x
        st[CD_CUSUM] = 0.0
        st[CD_WEIGHT] = 1.0
        st[CD_TOTAL] = 0.0
        st[CD_TOP] = 0.0
        for k in range(hist.shape[0]):
            hist[k] = 0.0
    else:
        st[CD_SHORT] += a_short * (x - st[CD_SHORT])
    level = np.log(st[CD_SHORT] + 1e-300)
    width = (CD_LOG_HIGH - CD_LOG_LOW) / hist.shape[0]
    if ticks > warm_ticks:
        tail = (1.0 - quantile) * st[CD_TOTAL]      # the weight above the quantile
        acc = 0.0
        base = CD_LOG_LOW
        for k in range(int(st[CD_TOP]), -1, -1):
            if acc + hist[k] >= tail and hist[k] > 0.0:
                base = CD_LOG_LOW + (k + 1.0 - (tail - acc) / hist[k]) * width
                break
            acc += hist[k]
        st[CD_BASE] = base
        g = st[CD_CUSUM] + (level - base - log_excess) * dt
        if g > threshold:
            st[CD_CUSUM] = 0.0
            st[CD_TICKS] = 0.0
            return True
        if g > 0.0:
            st[CD_CUSUM] = g
            return False
        st[CD_CUSUM] = 0.0
    k = int((min(max(level, CD_LOG_LOW), CD_LOG_HIGH - 1e-9) - CD_LOG_LOW) / width)
    w = st[CD_WEIGHT]
    hist[k] += w
    st[CD_TOTAL] += w
    if k > st[CD_TOP]:
        st[CD_TOP] = k
    w /= 1.0 - a_hist
    if w > 1e200:                                 # renormalise before overflow
        for i in range(hist.shape[0]):
            hist[i] /= w
        st[CD_TOTAL] /= w
        w = 1.0
    st[CD_WEIGHT] = w
    return False


@njit(cache=True)
def change_test(err, inv_kp, st, hist):
    """``change_cusum`` with its settings read from ``st`` (a Numba entry with few arguments)."""
    return change_cusum(err, inv_kp, st[CD_A_SHORT], st[CD_A_HIST], st[CD_WARM],
                        st[CD_QUANTILE], st[CD_LOG_EXCESS], st[CD_DT], st[CD_THRESHOLD], st,
                        hist)


@njit(cache=True)
def track_scales(io, table, headroom):
    """
    Grow the input scales the reference outgrows (automatic input normalisation).

    ``table`` rows (each 3n, per quantity then joint): the scales, the running peaks of
    |q_d|, |qd_d| and |qdd_d| (io rows 2..4), the scales before this tick, the floors,
    the slack. Where a peak outgrows its scale times the slack (1: automatic scales; fixed
    ones only once far outgrown) the scale becomes headroom x the peak (so each change
    is at least ``headroom``-fold). Scales start at their floors and only grow, so they
    settle once the reference has shown its range. Returns how many scales changed (the
    caller then rescales the readouts).
    """
    n = io.shape[1]
    changed = 0
    for k in range(3):
        for j in range(n):
            v = abs(io[2 + k, j])
            i = k * n + j
            table[2, i] = table[0, i]
            if v > table[1, i]:
                table[1, i] = v
                if v > table[4, i] * table[0, i]:
                    table[0, i] = max(table[3, i], headroom * v)
                    changed += 1
    return changed


# Rows of the continuous joints' table (``unwrap_angles``), one column per joint.
WRAP_MASK, WRAP_LAST, WRAP_REFERENCE, WRAP_MEASURED, WRAP_STARTED = range(5)
WRAP_ROWS = 5


@njit(cache=True)
def unwrap_angles(io, wrap):
    """
    Put the continuous joints' positions in io on one unbroken branch; allocates nothing.

    For a joint whose ``wrap[WRAP_MASK]`` is 1 the desired position continues the last
    one the shortest way round (a reference sent in [-pi, pi) or any other branch no
    longer jumps by 2 pi), and the measured position is taken on the branch nearest it,
    so the PD error is the shortest angle (ros2_controllers' angle_wraparound) and the
    reservoir's inputs stay continuous while the error is within half a turn (beyond, the
    measured position's branch flips with the shortest angle). ``wrap[WRAP_REFERENCE]`` and
    ``wrap[WRAP_MEASURED]`` keep the multiples of 2 pi added (to report positions in the
    caller's own branch); ``wrap[WRAP_LAST]`` the last desired position received.
    """
    two_pi = 2.0 * np.pi
    for j in range(io.shape[1]):
        if wrap[WRAP_MASK, j] == 0.0:
            continue
        raw = io[2, j]
        if wrap[WRAP_STARTED, j] == 0.0:
            wrap[WRAP_REFERENCE, j] = 0.0
            wrap[WRAP_STARTED, j] = 1.0
        else:       # the step since the last reference, taken in [-pi, pi)
            step = raw - wrap[WRAP_LAST, j]
            wrap[WRAP_REFERENCE, j] -= two_pi * np.floor((step + np.pi) / two_pi)
        wrap[WRAP_LAST, j] = raw
        desired = raw + wrap[WRAP_REFERENCE, j]
        io[2, j] = desired
        offset = two_pi * np.floor((desired - io[0, j] + np.pi) / two_pi)
        wrap[WRAP_MEASURED, j] = offset
        io[0, j] += offset


# What load_io returns besides 1 + the row of a value of the wrong length.
IO_VALID, IO_NOT_FINITE, IO_SCALES_GREW = 0, -1, -2
# Larger magnitudes are refused as not finite: an input scale grown to 1.25e307 made
# the readouts' rescaled weights infinite, and every later command NaN.
MAX_INPUT = 1e12


@njit('int64(float64[:], float64[:], float64[:], float64[:], float64[:], float64[:, :], '
      'float64[:, :], float64, float64[:, :])', cache=True)
def load_io(q, qd, q_d, qd_d, qdd_d, io, scales, headroom, wrap):
    """
    Copy one tick's measured and desired state into the rows of io and follow the scales.

    Returns IO_VALID, or IO_SCALES_GREW when the automatic normalisation (``headroom`` >
    0; ``scales``: the ``track_scales`` table) grew a scale; 1 + the index of the first
    value whose length is not io's row length; IO_NOT_FINITE when a value is not finite
    or above ``MAX_INPUT`` in magnitude. A refused tick leaves io and the scales untouched,
    so what the last valid tick computed stays what ``controller_state`` shows. Continuous
    joints are unwrapped (``unwrap_angles``, table ``wrap``) before the scales follow. The
    explicit signature means any other type
    raises TypeError instead of compiling mid-run; the caller then checks the slow way
    (lists, other dtypes) with the same rules. One Numba entry for both: the tick's
    cost is mostly such entries.
    """
    n = io.shape[1]
    values = (q, qd, q_d, qd_d, qdd_d)
    for r in range(5):
        if values[r].shape[0] != n:
            return 1 + r
    finite = True
    for r in range(5):
        v = values[r]
        for j in range(n):
            finite &= abs(v[j]) <= MAX_INPUT   # (False for NaN)
    if not finite:
        return IO_NOT_FINITE
    for r in range(5):
        v = values[r]
        for j in range(n):
            io[r, j] = v[j]
    unwrap_angles(io, wrap)
    if headroom > 0.0 and track_scales(io, scales, headroom):
        return IO_SCALES_GREW
    return IO_VALID


@njit(cache=True)
def bounded_command(pd, ff, ff_limit, limit, out, excess):
    """
    Bound the command: ff <- clip(ff, +-ff_limit); out = clip(pd + ff, +-limit).

    ``excess``: what the clip took off each feedforward (0 where it took nothing).
    Returns 1 when the feedforward was clipped plus 2 when the command was.
    """
    code = 0
    for j in range(out.shape[0]):
        f = ff[j]
        excess[j] = 0.0
        if f > ff_limit[j] or f < -ff_limit[j]:
            f = min(max(f, -ff_limit[j]), ff_limit[j])
            excess[j] = ff[j] - f
            ff[j] = f
            if ff_limit[j] > 0.0:       # 0: the feedforward switched off, not clipped
                code |= 1
        v = pd[j] + f
        if v > limit[j] or v < -limit[j]:
            v = min(max(v, -limit[j]), limit[j])
            code |= 2
        out[j] = v
    return code


@njit(cache=True)
def carry_on(q0, qd0, qdd0, e, position_limit, velocity_limit, q, qd, qdd):
    """
    Write a reference message's state ``e`` s on: q0 + qd0 e + qdd0 e^2 / 2, qd0 + qdd0 e.

    Per joint: one sent with velocity 0 stays at rest (no acceleration); a decelerating
    one only until its velocity reaches 0, at rest there; none beyond |position_limit|
    (at rest there) or |velocity_limit| (no acceleration there). ``e`` 0: as sent.
    """
    for j in range(q0.shape[0]):
        v, a = qd0[j], qdd0[j]
        if v == 0.0:
            q[j], qd[j], qdd[j] = q0[j], 0.0, 0.0
            continue
        t = e
        at_rest = False
        if v * a < 0.0 and -v / a <= t:
            t, at_rest = -v / a, True
        x, xd, xdd = q0[j] + (v + 0.5 * a * t) * t, v + a * t, a
        if at_rest:
            xd, xdd = 0.0, 0.0
        limit = position_limit[j]
        if abs(x) > limit:
            x, xd, xdd = limit if x > 0.0 else -limit, 0.0, 0.0
        limit = velocity_limit[j]
        if abs(xd) > limit:
            xd, xdd = limit if xd > 0.0 else -limit, 0.0
        q[j], qd[j], qdd[j] = x, xd, xdd


@njit(cache=True)
def state_table(q_d, q, pd, ff, command, offset, out):
    """
    Fill out (joints x 6): reference, feedback, error, PD effort, feedforward, command.

    The positions less ``offset`` (what ``unwrap_angles`` added to the measured ones).
    """
    for j in range(out.shape[0]):
        out[j, 0] = q_d[j] - offset[j]
        out[j, 1] = q[j] - offset[j]
        out[j, 2] = q_d[j] - q[j]
        out[j, 3] = pd[j]
        out[j, 4] = ff[j]
        out[j, 5] = command[j]


def warm_up() -> None:
    """
    Compile (or load from numba's cache) every kernel here.

    Each runs on tiny arrays of the types the controller passes.
    """
    io, out = np.ones((5, 1)), np.zeros(1)
    feedback_error_inputs(io, np.ones(3), np.ones(1), np.ones(1), out, np.zeros(8))
    bounded_command(out, out.copy(), np.ones(1), np.ones(1), np.zeros(1), np.zeros(1))
    state_table(out, out, out, out, out, out, np.zeros((1, 6)))
    unwrap_angles(io, np.zeros((WRAP_ROWS, 1)))
    carry_on(out, out, out, 0.0, np.ones(1), np.ones(1), out.copy(), out.copy(), out.copy())
    supervise(out, out, out, np.ones((3, 1)), np.zeros((6, 1)), 0, False, np.zeros(SV_SIZE))
    track_scales(io, np.ones((5, 3)), 1.25)
    change_cusum(out, np.ones(1), 0.1, 0.01, 2.0, 0.9, 1.0, 0.01, 0.2, np.zeros(CD_SIZE),
                 np.zeros(CD_BINS))
    change_test(out, np.ones(1), np.zeros(CD_SIZE), np.zeros(CD_BINS))
