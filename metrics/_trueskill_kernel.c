/* TrueSkill updates of single players in C: the hot loops of metrics.trueskill_fast.
 *
 * rate() is the fast engine's update of one game: the closed form for two players and the
 * trueskill package's message schedule for three or more (see metrics/trueskill_fast.py for
 * the model). The arithmetic is that of the Python it replaced, operation for operation and
 * in the same order, with libm's exp, sqrt and pow where the Python used math.exp, math.sqrt
 * and **, so results are the same doubles; it is built with -ffp-contract=off so the compiler
 * fuses no multiply-add. Where that Python raised (a zero divisor, a negative square root, a
 * power out of range), rate() raises the same exception; where the package gives up (an
 * outcome too unlikely for double precision), rate() returns None and the caller raises.
 *
 * Built by `pip install -e .` (pyproject.toml's ext-modules); in a worktree without an
 * install: python -c "import setuptools; setuptools.setup()" build_ext --inplace
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#define MIN_DELTA 0.0001 /* trueskill.DELTA: the schedule stops once no message moves more */
#define MAX_SWEEPS 10    /* the package's cap on forward/backward sweeps */
#define STACK_PLAYERS 8  /* games up to this size need no heap buffer */

static double SQRT2, PDF_SCALE; /* math.sqrt(2) and 1 / math.sqrt(2 * math.pi) * 1 */

/* The first Python arithmetic error met, if any; later operations run on regardless (their
 * results are discarded), as Python would have stopped at the first. */
enum fault { NO_FAULT, ZERO_DIVISION, ZERO_POWER, POWER_RANGE, SQRT_DOMAIN };

static inline double div_(double a, double b, enum fault *f) {
    if (b == 0.0 && !*f)
        *f = ZERO_DIVISION;
    return a / b;
}

/* float.__pow__ for the exponents used here (integers): 0.0 ** negative raises, an overflow
 * of finite operands raises, an underflow gives 0. */
static inline double pow_(double x, double y, enum fault *f) {
    if (x == 0.0 && y < 0 && !*f)
        *f = ZERO_POWER;
    double r = pow(x, y);
    if (isinf(r) && isfinite(x) && !*f)
        *f = POWER_RANGE;
    return r;
}

static inline double sqrt_(double x, enum fault *f) {
    if (x < 0 && !*f)
        *f = SQRT_DOMAIN;
    return sqrt(x);
}

static PyObject *raise_fault(enum fault f) {
    switch (f) {
    case ZERO_DIVISION:
        PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
        break;
    case ZERO_POWER:
        PyErr_SetString(PyExc_ZeroDivisionError, "0.0 cannot be raised to a negative power");
        break;
    case POWER_RANGE:
        errno = ERANGE;
        PyErr_SetFromErrno(PyExc_OverflowError);
        break;
    default:
        PyErr_SetString(PyExc_ValueError, "math domain error");
    }
    return NULL;
}

/* trueskill.backends.erfc, the same polynomial evaluated in the same order. */
static double erfc_(double x) {
    double z = fabs(x);
    double t = 1. / (1. + z / 2.);
    double r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (
        0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
            0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
                -0.82215223 + t * 0.17087277
            )))
        )))
    )));
    return x < 0 ? 2. - r : r;
}

/* The package's default cdf(x) and pdf(x) (mu 0, sigma 1). */
static inline double cdf_(double x) { return 0.5 * erfc_(-x / SQRT2); }

static inline double pdf_(double x, enum fault *f) {
    return PDF_SCALE * exp(-(pow_(x, 2.0, f) / 2));
}

/* TrueSkill.v_win and w_win, or v_draw and w_draw: the truncated-Gaussian corrections of
 * the mean and variance. Returns 0 where the package raises FloatingPointError. */
static int vw(double diff, double margin, int draw, double *v, double *w, enum fault *f) {
    if (draw) {
        double abs_diff = fabs(diff);
        double a = margin - abs_diff, b = -margin - abs_diff;
        double denom = cdf_(a) - cdf_(b);
        if (denom == 0.0)
            return 0;
        double pdf_a = pdf_(a, f), pdf_b = pdf_(b, f);
        double v_ = (pdf_b - pdf_a) / denom;
        *v = v_ * (diff < 0 ? -1.0 : 1.0);
        *w = pow_(v_, 2.0, f) + (a * pdf_a - b * pdf_b) / denom;
        return 1;
    }
    double z = diff - margin;
    double c = cdf_(z);
    double v_ = c != 0.0 ? pdf_(z, f) / c : -z;
    double w_ = v_ * (v_ + z);
    *v = v_;
    *w = w_;
    return 0 < w_ && w_ < 1;
}

typedef struct {
    double beta2, dyn, margin; /* beta^2, the dynamics factor tau, the two-player draw margin */
} Params;

/* The closed form of the two-player factor graph, players in rank order (a is the better
 * or, for a draw, the first); mu and sigma are read and written. Returns 0 where the package
 * raises. */
static int duel(const Params *p, int draw, double *mu, double *sigma, enum fault *f) {
    double mu_a = mu[0], sigma_a = sigma[0], mu_b = mu[1], sigma_b = sigma[1];
    double tau2 = p->dyn * p->dyn;
    double var_a = sigma_a * sigma_a + tau2;
    double var_b = sigma_b * sigma_b + tau2;
    double c2 = 2.0 * p->beta2 + var_a + var_b;
    double c = sqrt_(c2, f);
    double t = div_(mu_a - mu_b, c, f), margin = div_(p->margin, c, f);
    double v, w;
    if (!vw(t, margin, draw, &v, &w, f))
        return 0;
    mu[0] = mu_a + div_(var_a, c, f) * v;
    sigma[0] = sqrt_(var_a * (1.0 - div_(var_a, c2, f) * w), f);
    mu[1] = mu_b - div_(var_b, c, f) * v;
    sigma[1] = sqrt_(var_b * (1.0 - div_(var_b, c2, f) * w), f);
    return 1;
}

/* One difference factor's state: the difference marginal d, the messages of the difference
 * factor to d (md), to its left and right team (ml, mr), and of the truncation factor to d
 * (mt); Gaussians as (precision pi, precision-adjusted mean tau), as in the package. */
typedef struct {
    double d_pi, d_tau, md_pi, md_tau, mt_pi, mt_tau, ml_pi, ml_tau, mr_pi, mr_tau;
    int draw;
} Diff;

/* Per team k (players sorted by rank): the rating prior r after the dynamics factor, the
 * performance pp, the team performance marginal tp and its message tf from the
 * team-performance factor. */
typedef struct {
    double r_pi, r_tau, pp_pi, pp_tau, tp_pi, tp_tau, tf_pi, tf_tau;
} Team;

/* Difference factor x's step: with truncate, the sum factor down to d and the truncation
 * factor up (*delta takes the largest change); then, if send is +1 or -1, the message up to
 * the right or left team. Returns 0 where the package raises. */
static int diff_step(const Params *p, Team *tm, Diff *df, int x, int send, int truncate,
                     double *delta, enum fault *f) {
    Diff *s = &df[x];
    Team *left = &tm[x], *right = &tm[x + 1];
    double pi, tau;
    /* Messages into difference factor x from its two teams. */
    double p0 = left->tp_pi - s->ml_pi, t0 = left->tp_tau - s->ml_tau;
    double p1 = right->tp_pi - s->mr_pi, t1 = right->tp_tau - s->mr_tau;
    double mean0 = p0 != 0.0 ? t0 / p0 : 0.0;
    double mean1 = p1 != 0.0 ? t1 / p1 : 0.0;
    if (truncate) {
        /* SumFactor.down: d = tp[x] - tp[x+1] (zero precision: no information). */
        pi = p0 != 0.0 && p1 != 0.0 ? div_(1.0, 1 / p0 + 1 / p1, f) : 0.0;
        tau = pi * (mean0 - mean1);
        s->d_pi = (s->d_pi - s->md_pi) + pi;
        s->d_tau = (s->d_tau - s->md_tau) + tau;
        s->md_pi = pi;
        s->md_tau = tau;
        /* TruncateFactor.up */
        double div_pi = s->d_pi - s->mt_pi, div_tau = s->d_tau - s->mt_tau;
        double sqrt_pi = sqrt_(div_pi, f);
        double v, w;
        if (!vw(div_(div_tau, sqrt_pi, f), p->margin * sqrt_pi, s->draw, &v, &w, f))
            return 0;
        double denom = 1.0 - w;
        pi = div_(div_pi, denom, f);
        tau = div_(div_tau + sqrt_pi * v, denom, f);
        s->mt_pi = (pi + s->mt_pi) - s->d_pi;
        s->mt_tau = (tau + s->mt_tau) - s->d_tau;
        double pi_delta = fabs(s->d_pi - pi);
        if (pi_delta != INFINITY) { /* Variable.delta, as Python's max() picks */
            double a = fabs(s->d_tau - tau), b = sqrt_(pi_delta, f);
            double change = b > a ? b : a;
            if (change > *delta)
                *delta = change;
        }
        s->d_pi = pi;
        s->d_tau = tau;
    }
    if (send) {
        /* The message from the difference variable into factor x. */
        double pd = s->d_pi - s->md_pi, td = s->d_tau - s->md_tau;
        double mean_d = pd != 0.0 ? td / pd : 0.0;
        if (send == 1) { /* SumFactor.up(1): tp[x+1] = tp[x] - d */
            pi = p0 != 0.0 && pd != 0.0 ? div_(1.0, 1.0 / p0 + 1.0 / pd, f) : 0.0;
            tau = pi * (mean0 - mean_d);
            right->tp_pi = (right->tp_pi - s->mr_pi) + pi;
            right->tp_tau = (right->tp_tau - s->mr_tau) + tau;
            s->mr_pi = pi;
            s->mr_tau = tau;
        } else { /* SumFactor.up(0): tp[x] = d + tp[x+1] */
            pi = pd != 0.0 && p1 != 0.0 ? div_(1.0, 1.0 / pd + 1.0 / p1, f) : 0.0;
            tau = pi * (mean_d + mean1);
            left->tp_pi = (left->tp_pi - s->ml_pi) + pi;
            left->tp_tau = (left->tp_tau - s->ml_tau) + tau;
            s->ml_pi = pi;
            s->ml_tau = tau;
        }
    }
    return 1;
}

/* The package's run_schedule for single-player teams, in rank order; mu and sigma are read
 * and written per team. One sweep: forward over the first m-1 differences, each then sending
 * to its right team; backward over the last m-1, each sending to its left team. With only
 * two teams the package just repeats the first difference, sending nothing. Sweeps stop once
 * no truncation moved more than MIN_DELTA; then the two end differences send to their outer
 * teams, without truncating again. Returns 0 where the package raises. */
static int chain(const Params *p, int n, const int *draw, double *mu, double *sigma,
                 Team *tm, Diff *df, enum fault *f) {
    int m = n - 1;
    for (int k = 0; k < n; k++) {
        Team *t = &tm[k];
        double pi = pow_(sigma[k], -2.0, f); /* the package's Rating(mu, sigma) round trip */
        double tau = pi * mu[k];
        double mu_ = div_(tau, pi, f), sigma_ = sqrt_(div_(1, pi, f), f);
        pi = pow_(sqrt_(pow_(sigma_, 2.0, f) + pow_(p->dyn, 2.0, f), f), -2.0, f); /* PriorFactor */
        tau = pi * mu_;
        t->r_pi = pi;
        t->r_tau = tau;
        double a = div_(1.0, 1.0 + p->beta2 * pi, f); /* LikelihoodFactor.down */
        t->pp_pi = a * pi;
        t->pp_tau = a * tau;
        pi = div_(1.0, div_(1, t->pp_pi, f), f); /* team SumFactor.down (one term, weight 1) */
        t->tp_pi = pi;
        t->tp_tau = pi * div_(t->pp_tau, t->pp_pi, f);
        t->tf_pi = t->tp_pi;
        t->tf_tau = t->tp_tau;
    }
    memset(df, 0, sizeof(Diff) * m);
    for (int x = 0; x < m; x++)
        df[x].draw = draw[x];
    for (int sweeps = 1;; sweeps++) {
        double delta = 0.0;
        if (m == 1) {
            if (!diff_step(p, tm, df, 0, 0, 1, &delta, f))
                return 0;
        } else {
            for (int x = 0; x < m - 1; x++)
                if (!diff_step(p, tm, df, x, 1, 1, &delta, f))
                    return 0;
            for (int x = m - 1; x > 0; x--)
                if (!diff_step(p, tm, df, x, -1, 1, &delta, f))
                    return 0;
        }
        if (delta <= MIN_DELTA || sweeps == MAX_SWEEPS)
            break;
    }
    diff_step(p, tm, df, 0, -1, 0, NULL, f);
    diff_step(p, tm, df, m - 1, 1, 0, NULL, f);
    for (int k = 0; k < n; k++) {
        Team *t = &tm[k];
        double pv = t->tp_pi - t->tf_pi, tv = t->tp_tau - t->tf_tau; /* team SumFactor.up(0) */
        double pi = pv != 0.0 ? div_(1.0, 1.0 / pv, f) : 0.0;
        double up_pi = t->pp_pi + pi, up_tau = t->pp_tau + pi * (pv != 0.0 ? tv / pv : 0.0);
        pv = up_pi - t->pp_pi; /* LikelihoodFactor.up */
        tv = up_tau - t->pp_tau;
        double a = div_(1.0, 1.0 + p->beta2 * pv, f);
        pi = t->r_pi + a * pv;
        double tau = t->r_tau + a * tv;
        double mu_ = div_(tau, pi, f), sigma_ = sqrt_(div_(1, pi, f), f);
        pi = pow_(sigma_, -2.0, f); /* Rating(mu, sigma) as the package returns it */
        tau = pi * mu_;
        mu[k] = div_(tau, pi, f);
        sigma[k] = sqrt_(div_(1, pi, f), f);
    }
    return 1;
}

static int read_rating(PyObject *item, double *mu, double *sigma) {
    PyObject *pair = PySequence_Tuple(item);
    if (pair == NULL)
        return 0;
    int ok = PyTuple_GET_SIZE(pair) == 2;
    if (!ok)
        PyErr_SetString(PyExc_ValueError, "trueskill: expected (mu, sigma) pairs");
    else {
        *mu = PyFloat_AsDouble(PyTuple_GET_ITEM(pair, 0));
        *sigma = PyFloat_AsDouble(PyTuple_GET_ITEM(pair, 1));
        ok = !PyErr_Occurred();
    }
    Py_DECREF(pair);
    return ok;
}

static PyObject *rating_list(int n, const int *order, const double *mu, const double *sigma) {
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (int k = 0; k < n; k++) {
        PyObject *pair = Py_BuildValue("(dd)", mu[k], sigma[k]);
        if (pair == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, order[k], pair);
    }
    return out;
}

/* rate(ratings, ranks, beta2, tau, margin) -> list of (mu, sigma), or None where the package
 * raises FloatingPointError. ratings: (mu, sigma) pairs; ranks: one per rating, lower is
 * better, equal ranks draw; margin: the draw margin of two single players. */
static PyObject *rate(PyObject *self, PyObject *args) {
    PyObject *ratings_arg, *ranks_arg;
    Params p;
    if (!PyArg_ParseTuple(args, "OOddd:rate", &ratings_arg, &ranks_arg, &p.beta2, &p.dyn,
                          &p.margin))
        return NULL;
    /* Tuples (a tuple argument is not copied): comparisons and float conversions may run
     * Python code, which cannot change a tuple under the loops below. */
    PyObject *ratings = PySequence_Tuple(ratings_arg);
    if (ratings == NULL)
        return NULL;
    PyObject *ranks = PySequence_Tuple(ranks_arg);
    if (ranks == NULL) {
        Py_DECREF(ratings);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t size = PyTuple_GET_SIZE(ratings);
    if (size < 2 || size != PyTuple_GET_SIZE(ranks) || size > INT_MAX / 2) {
        PyErr_SetString(PyExc_ValueError, "trueskill: expected one rank per rating, 2 or more");
        goto done;
    }
    int n = (int)size;
    /* One block: order and draw flags (ints), mu and sigma, teams, differences. */
    int stack_order[2 * STACK_PLAYERS];
    double stack_mu[2 * STACK_PLAYERS];
    Team stack_teams[STACK_PLAYERS];
    Diff stack_diffs[STACK_PLAYERS];
    int *order = stack_order;
    double *mu = stack_mu;
    Team *teams = stack_teams;
    Diff *diffs = stack_diffs;
    void *heap = NULL;
    if (n > STACK_PLAYERS) {
        heap = PyMem_Malloc(n * (2 * sizeof(int) + 2 * sizeof(double) + sizeof(Team) +
                                 sizeof(Diff)));
        if (heap == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        teams = heap;
        diffs = (Diff *)(teams + n);
        mu = (double *)(diffs + n);
        order = (int *)(mu + 2 * n);
    }
    int *draw = order + n;
    double *sigma = mu + n;
    PyObject **rank = &PyTuple_GET_ITEM(ranks, 0);
    /* Stable sort by rank with < only, as sorted(range(n), key=ranks.__getitem__). */
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0; j--) {
            int less = PyObject_RichCompareBool(rank[i], rank[order[j - 1]], Py_LT);
            if (less < 0)
                goto free;
            if (!less)
                break;
            order[j] = order[j - 1];
        }
        order[j] = i;
    }
    for (int k = 0; k < n; k++)
        if (!read_rating(PyTuple_GET_ITEM(ratings, order[k]), &mu[k], &sigma[k]))
            goto free;
    for (int x = 0; x < n - 1; x++) {
        draw[x] = PyObject_RichCompareBool(rank[order[x]], rank[order[x + 1]], Py_EQ);
        if (draw[x] < 0)
            goto free;
    }
    enum fault f = NO_FAULT;
    int ok = n == 2 ? duel(&p, draw[0], mu, sigma, &f)
                    : chain(&p, n, draw, mu, sigma, teams, diffs, &f);
    if (f)
        raise_fault(f);
    else if (!ok)
        result = Py_NewRef(Py_None);
    else
        result = rating_list(n, order, mu, sigma);
free:
    PyMem_Free(heap);
done:
    Py_DECREF(ratings);
    Py_DECREF(ranks);
    return result;
}

static PyObject *py_cdf(PyObject *self, PyObject *arg) {
    double x = PyFloat_AsDouble(arg);
    return x == -1.0 && PyErr_Occurred() ? NULL : PyFloat_FromDouble(cdf_(x));
}

static PyObject *py_pdf(PyObject *self, PyObject *arg) {
    double x = PyFloat_AsDouble(arg);
    if (x == -1.0 && PyErr_Occurred())
        return NULL;
    enum fault f = NO_FAULT;
    double y = pdf_(x, &f);
    return f ? raise_fault(f) : PyFloat_FromDouble(y);
}

static PyMethodDef methods[] = {
    {"rate", rate, METH_VARARGS,
     "rate(ratings, ranks, beta2, tau, margin): new (mu, sigma) of single players after one "
     "game, or None where the outcome is too unlikely for double precision."},
    {"cdf", py_cdf, METH_O, "The package's default cdf(x), as rate() computes it."},
    {"pdf", py_pdf, METH_O, "The package's default pdf(x), as rate() computes it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_trueskill_kernel",
    "TrueSkill updates of single players in C (see metrics.trueskill_fast).", -1, methods,
};

PyMODINIT_FUNC PyInit__trueskill_kernel(void) {
    SQRT2 = sqrt(2.0);
    PDF_SCALE = 1 / sqrt(2 * 3.141592653589793) * 1;
    return PyModule_Create(&module);
}
