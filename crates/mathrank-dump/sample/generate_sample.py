#!/usr/bin/env python3.12
"""Writes the embedded sample dump (Posts.xml) of mathrank.

Every question and answer is composed here from templates written for this project (no text
comes from Stack Exchange). Run `python3.12 generate_sample.py > Posts.xml` (3.12+: f-strings with backslashes); the output is
deterministic (fixed seed). It has ~330 questions and ~700 answers over eight topics, LaTeX as
bare `$..$` (ARQMath style) and inside `<span class="math-container">` (current dumps), code
blocks, lists, links, entities, votes, accepted answers, and a few deliberately bad rows.
"""
import random
from xml.sax.saxutils import escape

rng = random.Random(20261126)
MC = True  # toggled per post: math-container spans or bare dollars


def m(tex, display=False):
    d = "$$" if display else "$"
    s = f"{d}{tex}{d}"
    if MC:
        return f'<span class="math-container">{s}</span>'
    return s


CONTEXTS = [
    "This came up while I was preparing for an exam.",
    "My textbook skips this step and I would like to understand it.",
    "I tried this for a while but I am stuck.",
    "Our instructor mentioned this in passing during a lecture.",
    "I found this exercise in an old problem set.",
    "I am self-studying and cannot verify my reasoning.",
    "A friend claimed the answer is obvious, but I do not see why.",
    "I would appreciate a hint rather than a full solution.",
]


def ctx():
    return f"<p>{rng.choice(CONTEXTS)}</p>"


# Each template returns (title, body, tags, [answers]) where every answer is HTML.
def t_power_integral():
    n, a = rng.randint(2, 9), rng.randint(2, 7)
    title = f"Evaluate the integral of x^{n} from 0 to {a}"
    body = f"<p>How do I compute {m(f'\\int_0^{{{a}}} x^{{{n}}}\\,dx')}? I know the antiderivative should involve {m(f'x^{{{n+1}}}')} but I keep getting the constant wrong.</p>" + ctx()
    ans = [
        f"<p>Use the power rule: an antiderivative of {m(f'x^{{{n}}}')} is {m(f'\\frac{{x^{{{n+1}}}}}{{{n+1}}}')}. Hence</p><p>{m(f'\\int_0^{{{a}}} x^{{{n}}}\\,dx = \\frac{{{a}^{{{n+1}}}}}{{{n+1}}} - 0 = \\frac{{{a**(n+1)}}}{{{n+1}}}.', True)}</p><p>The constant of integration cancels in a definite integral.</p>",
        f"<p>You can check the value numerically:</p><pre><code>from scipy.integrate import quad\nprint(quad(lambda x: x**{n}, 0, {a}))  # about {a**(n+1)/(n+1):.4f}\n</code></pre><p>which agrees with {m(f'{a}^{{{n+1}}}/{n+1}')}.</p>",
        f"<p>Substitute {m(f'x = {a}t')}: then {m(f'dx = {a}\\,dt')} and the integral becomes {m(f'{a}^{{{n+1}}}\\int_0^1 t^{{{n}}}\\,dt = \\frac{{{a}^{{{n+1}}}}}{{{n+1}}}')}.</p>",
    ]
    return title, body, ["calculus", "integration", "definite-integrals"], ans


def t_sin_limit():
    k = rng.randint(2, 9)
    title = f"Limit of sin({k}x)/x as x approaches 0"
    body = f"<p>I need {m(f'\\lim_{{x\\to 0}} \\frac{{\\sin({k}x)}}{{x}}')}. Plugging in gives {m('0/0')}, so I am not sure how to proceed without L'Hôpital.</p>" + ctx()
    ans = [
        f"<p>Write {m(f'\\frac{{\\sin({k}x)}}{{x}} = {k}\\cdot\\frac{{\\sin({k}x)}}{{{k}x}}')} and use {m('\\lim_{u\\to 0}\\frac{\\sin u}{u} = 1')} with {m(f'u = {k}x')}. The limit is {m(str(k))}.</p>",
        f"<p>With L'H&ocirc;pital's rule: differentiate numerator and denominator to get {m(f'\\lim_{{x\\to0}} {k}\\cos({k}x) = {k}')}.</p>",
        f"<p>Taylor expansion: {m(f'\\sin({k}x) = {k}x - \\frac{{({k}x)^3}}{{6}} + O(x^5)')}, so dividing by {m('x')} gives {m(f'{k} + O(x^2) \\to {k}')}.</p>",
    ]
    return title, body, ["calculus", "limits", "trigonometry"], ans


def t_derivative_product():
    n, k = rng.randint(2, 6), rng.randint(2, 5)
    title = f"Derivative of x^{n} e^({k}x) using the product rule"
    body = f"<p>Find {m(f'\\frac{{d}}{{dx}}\\left(x^{{{n}}} e^{{{k}x}}\\right)')}. I got {m(f'{n}x^{{{n-1}}}e^{{{k}x}}')} but the book has an extra term.</p>" + ctx()
    ans = [
        f"<p>The product rule gives {m(f'(fg)\' = f\'g + fg\'')} with {m(f'f = x^{{{n}}}')}, {m(f'g = e^{{{k}x}}')}:</p><p>{m(f'\\frac{{d}}{{dx}}\\left(x^{{{n}}}e^{{{k}x}}\\right) = {n}x^{{{n-1}}}e^{{{k}x}} + {k}x^{{{n}}}e^{{{k}x}} = x^{{{n-1}}}e^{{{k}x}}({n} + {k}x).', True)}</p><p>You forgot the chain rule factor {m(str(k))} from {m(f'e^{{{k}x}}')}.</p>",
        f"<p>Logarithmic differentiation also works: {m(f'\\ln y = {n}\\ln x + {k}x')}, so {m(f'y\'/y = {n}/x + {k}')}.</p>",
    ]
    return title, body, ["calculus", "derivatives"], ans


def t_p_series():
    p = rng.choice(["2", "3", "1/2", "3/2", "4", "1.1", "0.9", "5/4"])
    val = eval(p.replace("/", "/1.0/") if False else p.replace("/", "/"))
    conv = val > 1
    title = f"Does the series sum 1/n^{p} converge?"
    body = f"<p>Does {m(f'\\sum_{{n=1}}^\\infty \\frac{{1}}{{n^{{{p}}}}}')} converge or diverge? I tried the ratio test and it was inconclusive.</p>" + ctx()
    verdict = "converges" if conv else "diverges"
    ans = [
        f"<p>This is a {m('p')}-series with {m(f'p = {p}')}. Compare with the integral {m(f'\\int_1^\\infty x^{{-{p}}}\\,dx')}, which is finite exactly when {m('p > 1')}. So the series {verdict}.</p><p>The ratio test always gives limit {m('1')} for {m('p')}-series, which is why it was inconclusive.</p>",
        f"<p>Cauchy condensation: {m(f'\\sum 2^k (2^k)^{{-{p}}} = \\sum 2^{{k(1-{p})}}')}, a geometric series that {verdict} since the ratio is {m(f'2^{{1-{p}}}')}.</p>",
    ]
    return title, body, ["sequences-and-series", "convergence-divergence", "real-analysis"], ans


def t_taylor():
    f = rng.choice([("e^{%dx}", "exponential"), ("\\cos(%dx)", "cosine"), ("\\ln(1+%dx)", "logarithm"), ("\\frac{1}{1-%dx}", "geometric")])
    k = rng.randint(2, 7)
    fx = f[0] % k
    title = f"Taylor series of the {f[1]} {fx.replace(chr(92), '')} around 0"
    body = f"<p>What is the Maclaurin series of {m(f'f(x) = {fx}')} and its radius of convergence? I want the first four nonzero terms.</p>" + ctx()
    series = {
        "exponential": f"\\sum_{{n\\ge0}} \\frac{{{k}^n x^n}}{{n!}} = 1 + {k}x + \\frac{{{k*k}x^2}}{{2}} + \\frac{{{k**3}x^3}}{{6}} + \\cdots",
        "cosine": f"\\sum_{{n\\ge0}} (-1)^n\\frac{{({k}x)^{{2n}}}}{{(2n)!}} = 1 - \\frac{{{k*k}x^2}}{{2}} + \\frac{{{k**4}x^4}}{{24}} - \\cdots",
        "logarithm": f"\\sum_{{n\\ge1}} (-1)^{{n+1}}\\frac{{({k}x)^n}}{{n}} = {k}x - \\frac{{{k*k}x^2}}{{2}} + \\frac{{{k**3}x^3}}{{3}} - \\cdots",
        "geometric": f"\\sum_{{n\\ge0}} ({k}x)^n = 1 + {k}x + {k*k}x^2 + {k**3}x^3 + \\cdots",
    }[f[1]]
    radius = "\\infty" if f[1] in ("exponential", "cosine") else f"\\frac{{1}}{{{k}}}"
    ans = [
        f"<p>Substitute {m(f'u = {k}x')} into the known series of the {f[1]}:</p><p>{m(f'{fx} = {series}', True)}</p><p>The radius of convergence is {m(f'R = {radius}')}.</p>",
        f"<p>Compute derivatives at zero: {m(f'f^{{(n)}}(0)')} follows a simple pattern for {m(fx)}, and {m(f'f(x) = \\sum \\frac{{f^{{(n)}}(0)}}{{n!}}x^n')}. The ratio test then gives {m(f'R = {radius}')}.</p>",
    ]
    return title, body, ["calculus", "taylor-expansion", "power-series"], ans


def t_eigen():
    a, b, d = rng.randint(1, 6), rng.randint(1, 5), rng.randint(1, 6)
    tr, det = a + d, a * d
    title = f"Eigenvalues of the upper triangular matrix [[{a},{b}],[0,{d}]]"
    body = f"<p>Find the eigenvalues and eigenvectors of {m(f'A = \\begin{{pmatrix}} {a} & {b} \\\\ 0 & {d} \\end{{pmatrix}}')}. Is {m('A')} diagonalizable?</p>" + ctx()
    diag = "diagonalizable, since the eigenvalues are distinct" if a != d else "not diagonalizable, since the eigenvalue is repeated and the eigenspace is one-dimensional"
    ans = [
        f"<p>For a triangular matrix the eigenvalues are the diagonal entries: the characteristic polynomial is {m(f'\\det(A - \\lambda I) = ({a}-\\lambda)({d}-\\lambda)')}, so {m(f'\\lambda_1 = {a}')} and {m(f'\\lambda_2 = {d}')}.</p><p>{m('A')} is {diag}.</p>",
        f"<p>Check with trace and determinant: {m(f'\\operatorname{{tr}}A = {tr}')} and {m(f'\\det A = {det}')} equal the sum and the product of the eigenvalues {m(f'{a}')} and {m(f'{d}')}.</p><ul><li>eigenvector for {m(f'\\lambda = {a}')}: {m('(1, 0)^T')}</li><li>the other one solves {m(f'(A - {d}I)v = 0')}</li></ul>",
    ]
    return title, body, ["linear-algebra", "eigenvalues-eigenvectors", "matrices"], ans


def t_determinant():
    m3 = [[rng.randint(-3, 5) for _ in range(3)] for _ in range(3)]
    det = (m3[0][0] * (m3[1][1] * m3[2][2] - m3[1][2] * m3[2][1]) - m3[0][1] * (m3[1][0] * m3[2][2] - m3[1][2] * m3[2][0]) + m3[0][2] * (m3[1][0] * m3[2][1] - m3[1][1] * m3[2][0]))
    rows = " \\\\ ".join(" & ".join(str(x) for x in r) for r in m3)
    title = f"Determinant of a 3x3 matrix with first row {m3[0][0]}, {m3[0][1]}, {m3[0][2]}"
    body = f"<p>Compute {m(f'\\det\\begin{{bmatrix}} {rows} \\end{{bmatrix}}')} by cofactor expansion. I keep making sign errors.</p>" + ctx()
    ans = [
        f"<p>Expand along the first row with signs {m('+,-,+')}:</p><p>{m(f'\\det = {m3[0][0]}\\cdot({m3[1][1]}\\cdot{m3[2][2]} - {m3[1][2]}\\cdot{m3[2][1]}) - {m3[0][1]}\\cdot({m3[1][0]}\\cdot{m3[2][2]} - {m3[1][2]}\\cdot{m3[2][0]}) + {m3[0][2]}\\cdot({m3[1][0]}\\cdot{m3[2][1]} - {m3[1][1]}\\cdot{m3[2][0]}) = {det}', True)}</p>",
        f"<p>Row reduce to an upper triangular matrix and multiply the pivots; swapping rows flips the sign. You should get {m(str(det))}. A quick check:</p><pre><code>import numpy as np\nnp.linalg.det(np.array({m3}))  # {det}\n</code></pre>",
    ]
    return title, body, ["linear-algebra", "determinant", "matrices"], ans


def t_linear_system():
    x, y = rng.randint(-5, 6), rng.randint(-5, 6)
    a, b, c, d = rng.randint(1, 5), rng.randint(1, 5), rng.randint(1, 5), rng.randint(-4, -1)
    e, f = a * x + b * y, c * x + d * y
    title = f"Solve the system {a}x + {b}y = {e}, {c}x {d:+d}y = {f}"
    body = f"<p>Solve {m(f'\\begin{{cases}} {a}x + {b}y = {e} \\\\ {c}x {d:+d}y = {f} \\end{{cases}}')} using Cramer's rule or elimination.</p>" + ctx()
    D = a * d - b * c
    ans = [
        f"<p>Cramer's rule: {m(f'D = {a}\\cdot({d}) - {b}\\cdot{c} = {D}')}, so {m(f'x = \\frac{{{e}\\cdot({d}) - {b}\\cdot{f}}}{{{D}}} = {x}')} and {m(f'y = \\frac{{{a}\\cdot{f} - {e}\\cdot{c}}}{{{D}}} = {y}')}.</p>",
        f"<p>Elimination: multiply the first equation by {m(str(c))} and the second by {m(str(a))}, subtract, and you find {m(f'y = {y}')}; back substitution gives {m(f'x = {x}')}.</p>",
    ]
    return title, body, ["linear-algebra", "systems-of-equations"], ans


def t_mod_power():
    base, exp, mod = rng.randint(2, 9), rng.randint(20, 400), rng.choice([5, 7, 11, 13, 17, 19, 23])
    r = pow(base, exp, mod)
    title = f"Remainder of {base}^{exp} divided by {mod}"
    body = f"<p>What is {m(f'{base}^{{{exp}}} \\bmod {mod}')}? Computing the power directly is hopeless.</p>" + ctx()
    e = exp % (mod - 1)
    ans = [
        f"<p>By Fermat's little theorem {m(f'{base}^{{{mod-1}}} \\equiv 1 \\pmod{{{mod}}}')} since {m(str(mod))} is prime and does not divide {m(str(base))}. As {m(f'{exp} = {mod-1}\\cdot{exp // (mod-1)} + {e}')},</p><p>{m(f'{base}^{{{exp}}} \\equiv {base}^{{{e}}} \\equiv {r} \\pmod{{{mod}}}.', True)}</p>",
        f"<p>Repeated squaring: write {m(str(exp))} in binary and square modulo {m(str(mod))} at each step. In Python, <code>pow({base}, {exp}, {mod})</code> returns {m(str(r))}.</p>",
    ]
    return title, body, ["number-theory", "modular-arithmetic", "elementary-number-theory"], ans


def t_gcd():
    g = rng.randint(2, 30)
    a, b = g * rng.randint(3, 40), g * rng.randint(3, 40)
    import math
    gg = math.gcd(a, b)
    title = f"Greatest common divisor of {a} and {b} with the Euclidean algorithm"
    body = f"<p>Compute {m(f'\\gcd({a}, {b})')} and find integers {m('s, t')} with {m(f'{a}s + {b}t = \\gcd({a},{b})')}.</p>" + ctx()
    steps = []
    x, y = max(a, b), min(a, b)
    while y:
        steps.append(f"{x} = {x // y}\\cdot {y} + {x % y}")
        x, y = y, x % y
    ans = [
        "<p>The Euclidean algorithm:</p><p>" + m(" \\\\ ".join(steps), True) + f"</p><p>The last nonzero remainder is {m(f'\\gcd({a},{b}) = {gg}')}. Run the steps backwards (extended Euclid) to get Bézout coefficients.</p>",
        f"<p>Factor both numbers: the common prime factors give {m(str(gg))}. Then {m(f'\\operatorname{{lcm}}({a},{b}) = {a*b//gg}')} as a check, because {m('\\gcd\\cdot\\operatorname{lcm} = ab')}.</p>",
    ]
    return title, body, ["number-theory", "gcd-and-lcm", "euclidean-algorithm"], ans


def t_prime_proof():
    k = rng.choice([3, 4, 6])
    r = {3: 2, 4: 3, 6: 5}[k]
    title = f"Infinitely many primes of the form {k}n+{r}"
    body = f"<p>How can I prove there are infinitely many primes {m(f'p \\equiv {r} \\pmod{{{k}}}')}? Euclid's argument for all primes does not seem to adapt directly.</p>" + ctx()
    ans = [
        f"<p>Suppose {m('p_1, \\dots, p_m')} are all such primes and let {m(f'N = {k}p_1p_2\\cdots p_m - 1')}. Then {m(f'N \\equiv {r} \\pmod{{{k}}}')}, and a product of primes that are all {m(f'\\equiv 1 \\pmod{{{k}}}')} is again {m(f'\\equiv 1')}. So some prime factor of {m('N')} is {m(f'\\equiv {r}')}, yet it is none of the {m('p_i')}: contradiction.</p>",
        f"<p>This is a special case of Dirichlet's theorem on arithmetic progressions, which says every progression {m('an+b')} with {m('\\gcd(a,b)=1')} has infinitely many primes; see <a href=\"https://en.wikipedia.org/wiki/Dirichlet%27s_theorem_on_arithmetic_progressions\">Dirichlet's theorem</a>. The elementary proof above avoids {m('L')}-functions.</p>",
    ]
    return title, body, ["number-theory", "prime-numbers", "proof-writing"], ans


def t_dice():
    n, s = rng.randint(2, 4), rng.randint(5, 15)
    from itertools import product
    ways = sum(1 for t in product(range(1, 7), repeat=n) if sum(t) == s)
    if ways == 0:
        s = 3 * n
        ways = sum(1 for t in product(range(1, 7), repeat=n) if sum(t) == s)
    total = 6 ** n
    title = f"Probability that {n} dice sum to {s}"
    body = f"<p>If I roll {n} fair six-sided dice, what is {m(f'P(X_1 + \\cdots + X_{n} = {s})')}? Is there a faster way than listing outcomes?</p>" + ctx()
    ans = [
        f"<p>Count solutions of {m(f'x_1 + \\cdots + x_{n} = {s}')} with {m('1 \\le x_i \\le 6')}. Inclusion&ndash;exclusion or direct counting gives {m(str(ways))} outcomes out of {m(f'6^{n} = {total}')}, so the probability is {m(f'\\frac{{{ways}}}{{{total}}}')}.</p>",
        f"<p>Generating functions: the answer is the coefficient of {m(f'x^{{{s}}}')} in {m(f'\\left(x + x^2 + \\cdots + x^6\\right)^{n}')} divided by {m(f'6^{n}')}.</p><pre><code>from itertools import product\nsum(1 for t in product(range(1, 7), repeat={n}) if sum(t) == {s})  # {ways}\n</code></pre>",
    ]
    return title, body, ["probability", "dice", "combinatorics"], ans


def t_binomial_prob():
    n, k = rng.randint(5, 12), 0
    k = rng.randint(1, n - 1)
    p = rng.choice(["1/2", "1/3", "1/4", "2/5"])
    title = f"Probability of exactly {k} successes in {n} trials with p = {p}"
    body = f"<p>A biased coin lands heads with probability {m(f'p = {p}')}. What is the probability of exactly {m(str(k))} heads in {m(str(n))} independent tosses, and what is the expected number of heads?</p>" + ctx()
    ans = [
        f"<p>The number of heads is binomial {m(f'X \\sim \\mathrm{{Bin}}({n}, {p})')}, so {m(f'P(X = {k}) = \\binom{{{n}}}{{{k}}} \\left({p}\\right)^{{{k}}}\\left(1 - {p}\\right)^{{{n-k}}}')} and {m(f'E[X] = np = {n}\\cdot {p}')}.</p>",
        f"<p>Think of choosing which {m(str(k))} of the {m(str(n))} tosses are heads: {m(f'\\binom{{{n}}}{{{k}}}')} ways, each with probability {m(f'p^{{{k}}}(1-p)^{{{n-k}}}')}. Linearity of expectation gives the mean without any sum.</p>",
    ]
    return title, body, ["probability", "binomial-distribution", "probability-distributions"], ans


def t_expectation_geom():
    p = rng.choice(["1/6", "1/3", "1/4", "1/5", "1/10"])
    title = f"Expected number of trials until the first success with probability {p}"
    body = f"<p>Each trial succeeds with probability {m(f'p = {p}')}, independently. How many trials do I expect until the first success, and what is the variance?</p>" + ctx()
    q = p.split("/")[1]
    ans = [
        f"<p>The count {m('N')} is geometric: {m('P(N = k) = (1-p)^{k-1}p')}. Then {m(f'E[N] = \\sum_{{k\\ge1}} k(1-p)^{{k-1}}p = \\frac{{1}}{{p}} = {q}')} and {m('\\operatorname{Var}(N) = \\frac{1-p}{p^2}')}.</p>",
        f"<p>First-step analysis: {m('E[N] = 1 + (1-p)E[N]')}, so {m('E[N] = 1/p')}, i.e. {m(q)} trials on average.</p>",
    ]
    return title, body, ["probability", "expected-value", "geometric-distribution"], ans


def t_binomial_identity():
    n = rng.randint(4, 20)
    title = f"Prove that the sum of binomial coefficients C({n},k) equals 2^{n}"
    body = f"<p>Show {m(f'\\sum_{{k=0}}^{{{n}}} \\binom{{{n}}}{{k}} = 2^{{{n}}}')} both algebraically and combinatorially.</p>" + ctx()
    ans = [
        f"<p>Set {m('x = y = 1')} in the binomial theorem {m(f'(x+y)^{{{n}}} = \\sum_{{k=0}}^{{{n}}}\\binom{{{n}}}{{k}}x^ky^{{{n}-k}}')}.</p>",
        f"<p>Combinatorially, both sides count the subsets of a set with {m(str(n))} elements: the left side groups them by size {m('k')}, the right side decides for each element whether it is in the subset.</p>",
        f"<p>Induction on {m('n')} with Pascal's rule {m('\\binom{n+1}{k} = \\binom{n}{k} + \\binom{n}{k-1}')} also works.</p>",
    ]
    return title, body, ["combinatorics", "binomial-coefficients", "summation"], ans


def t_arrangements():
    word = rng.choice(["BANANA", "MISSISSIPPI", "STATISTICS", "COMMITTEE", "BALLOON", "LETTER", "ASSESSMENT", "PEPPER", "TENNESSEE", "PARALLEL"])
    from collections import Counter
    import math
    c = Counter(word)
    val = math.factorial(len(word))
    for v in c.values():
        val //= math.factorial(v)
    denom = "".join(f"{v}!" for v in c.values() if v > 1)
    title = f"Number of distinct arrangements of the letters of {word}"
    body = f"<p>How many different strings can be formed by rearranging all letters of the word <strong>{word}</strong>? Repeated letters confuse me.</p>" + ctx()
    ans = [
        f"<p>There are {m(f'{len(word)}!')} orderings if all letters were distinct; divide by the orderings of each repeated letter: {m(f'\\frac{{{len(word)}!}}{{{denom}}} = {val}')}.</p>",
        f"<p>Place letters one kind at a time with multinomial coefficients: choose positions for the most frequent letter, then for the next, and so on. The product is again {m(str(val))}.</p>",
    ]
    return title, body, ["combinatorics", "permutations"], ans


def t_pigeonhole():
    n = rng.randint(5, 30)
    title = f"Pigeonhole principle: {n+1} integers from 1 to {2*n}"
    body = f"<p>Prove that among any {m(str(n+1))} integers chosen from {m(f'\\{{1, 2, \\dots, {2*n}\\}}')} two are consecutive, and that one divides another.</p>" + ctx()
    ans = [
        f"<p>Split {m(f'\\{{1,\\dots,{2*n}\\}}')} into the {m(str(n))} pairs {m(f'\\{{1,2\\}}, \\{{3,4\\}}, \\dots, \\{{{2*n-1},{2*n}\\}}')}. By the pigeonhole principle two of the {m(str(n+1))} numbers lie in one pair, so they are consecutive.</p>",
        f"<p>For divisibility write each number as {m('2^a m')} with {m('m')} odd. There are only {m(str(n))} odd values {m(f'm \\le {2*n-1}')}, so two chosen numbers share {m('m')}, and the smaller divides the larger.</p>",
    ]
    return title, body, ["combinatorics", "pigeonhole-principle", "discrete-mathematics"], ans


def t_group_order():
    n = rng.choice([6, 8, 9, 10, 12, 14, 15, 21, 25, 49])
    title = f"Classify all groups of order {n}"
    body = f"<p>Up to isomorphism, how many groups of order {m(str(n))} are there? I know Lagrange's theorem but not how to finish.</p>" + ctx()
    info = {6: ("two", "\\mathbb{Z}_6, S_3"), 8: ("five", "\\mathbb{Z}_8, \\mathbb{Z}_4\\times\\mathbb{Z}_2, \\mathbb{Z}_2^3, D_4, Q_8"), 9: ("two", "\\mathbb{Z}_9, \\mathbb{Z}_3\\times\\mathbb{Z}_3"), 10: ("two", "\\mathbb{Z}_{10}, D_5"), 12: ("five", "\\mathbb{Z}_{12}, \\mathbb{Z}_6\\times\\mathbb{Z}_2, A_4, D_6, \\mathrm{Dic}_3"), 14: ("two", "\\mathbb{Z}_{14}, D_7"), 15: ("one", "\\mathbb{Z}_{15}"), 21: ("two", "\\mathbb{Z}_{21}, \\mathbb{Z}_7\\rtimes\\mathbb{Z}_3"), 25: ("two", "\\mathbb{Z}_{25}, \\mathbb{Z}_5\\times\\mathbb{Z}_5"), 49: ("two", "\\mathbb{Z}_{49}, \\mathbb{Z}_7\\times\\mathbb{Z}_7")}[n]
    ans = [
        f"<p>Use the Sylow theorems on {m(f'|G| = {n}')}: count the Sylow subgroups {m('n_p')} with {m('n_p \\equiv 1 \\pmod p')} and {m('n_p')} dividing the index. This leaves {info[0]} groups: {m(info[1])}.</p>",
        f"<p>A shortcut: a group of order {m('p^2')} is abelian, and for {m('pq')} with {m('p < q')} the group is cyclic unless {m('p \\mid q - 1')}. Apply whichever case fits {m(str(n))}.</p>",
    ]
    return title, body, ["abstract-algebra", "group-theory", "finite-groups"], ans


def t_polynomial_roots():
    r1, r2 = rng.randint(-7, 7), rng.randint(-7, 7)
    b, c = -(r1 + r2), r1 * r2
    title = f"Roots of the quadratic x^2 {b:+d}x {c:+d}"
    body = f"<p>Solve {m(f'x^2 {b:+d}x {c:+d} = 0')} and explain the relation between the roots and the coefficients.</p>" + ctx()
    ans = [
        f"<p>The quadratic formula gives {m(f'x = \\frac{{{-b} \\pm \\sqrt{{{b*b} - 4\\cdot{c}}}}}{{2}}')}, i.e. {m(f'x = {r1}')} and {m(f'x = {r2}')}.</p>",
        f"<p>Vieta's formulas: the roots add to {m(f'{-b}')} and multiply to {m(str(c))}, so guess integer roots: {m(f'(x {-r1:+d})(x {-r2:+d})')} works.</p>",
    ]
    return title, body, ["algebra-precalculus", "quadratics", "polynomials"], ans


def t_inequality():
    n = rng.randint(2, 6)
    title = f"AM-GM inequality for {n} positive numbers"
    vars_ = ", ".join(f"a_{i}" for i in range(1, n + 1))
    body = f"<p>Prove that for positive reals {m(vars_)}: {m(f'\\frac{{a_1 + \\cdots + a_{n}}}{{{n}}} \\ge \\sqrt[{n}]{{a_1 \\cdots a_{n}}}')}, with equality iff all are equal.</p>" + ctx()
    ans = [
        f"<p>Take logarithms: {m('\\ln')} is concave, so by Jensen's inequality {m(f'\\ln\\left(\\frac{{1}}{{{n}}}\\sum a_i\\right) \\ge \\frac{{1}}{{{n}}}\\sum \\ln a_i')}. Exponentiate. Equality in Jensen needs all {m('a_i')} equal.</p>",
        f"<p>Cauchy's forward&ndash;backward induction: prove it for powers of two, then pad with the mean to reach {m(str(n))} terms.</p>",
    ]
    return title, body, ["inequality", "algebra-precalculus", "a.m.-g.m.-inequality"], ans


def t_uniform_continuity():
    f = rng.choice(["x^2", "\\sqrt{x}", "\\sin(x^2)", "\\frac{1}{x}", "e^x", "x\\sin x", "\\ln x", "\\cos x"])
    dom = rng.choice(["[0, \\infty)", "(0, 1)", "[0,1]", "\\mathbb{R}", "(1, \\infty)"])
    title = f"Is f(x) = {f.replace(chr(92), '')} uniformly continuous on {dom.replace(chr(92), '')}?"
    body = f"<p>Decide whether {m(f'f(x) = {f}')} is uniformly continuous on {m(dom)}. I know the {m('\\varepsilon')}-{m('\\delta')} definition but cannot choose {m('\\delta')}.</p>" + ctx()
    ans = [
        f"<p>A continuous function on a compact interval is uniformly continuous (Heine&ndash;Cantor). On a non-compact domain such as {m(dom)} look at the derivative: if {m(f'f\'')} is bounded, {m('f')} is Lipschitz and hence uniformly continuous; if {m(f'f(x) = {f}')} oscillates or grows faster than linearly, find sequences {m('x_n, y_n')} with {m('|x_n - y_n| \\to 0')} but {m('|f(x_n) - f(y_n)| \\not\\to 0')}.</p>",
        f"<p>For {m(f'{f}')} write {m('|f(x) - f(y)|')} in terms of {m('|x-y|')} by the mean value theorem: {m('|f(x)-f(y)| = |f\'(\\xi)|\\,|x-y|')}. Whether {m('\\sup |f\'|')} over {m(dom)} is finite settles it in most textbook cases.</p>",
    ]
    return title, body, ["real-analysis", "continuity", "uniform-continuity"], ans


def t_sequence_limit():
    a = rng.randint(2, 9)
    title = f"Limit of the sequence (1 + {a}/n)^n"
    body = f"<p>Show that {m(f'\\lim_{{n\\to\\infty}} \\left(1 + \\frac{{{a}}}{{n}}\\right)^n = e^{{{a}}}')}. I know the case {m('a = 1')} as a definition of {m('e')}.</p>" + ctx()
    ans = [
        f"<p>Take logarithms: {m(f'n\\ln\\left(1+\\frac{{{a}}}{{n}}\\right) = {a}\\cdot\\frac{{\\ln(1 + {a}/n)}}{{{a}/n}} \\to {a}')} because {m('\\ln(1+u)/u \\to 1')}. Continuity of {m('\\exp')} finishes it.</p>",
        f"<p>Substitute {m(f'n = {a}m')}: {m(f'\\left(1+\\frac{{1}}{{m}}\\right)^{{{a}m}} = \\left[\\left(1+\\frac{{1}}{{m}}\\right)^m\\right]^{{{a}}} \\to e^{{{a}}}')} along that subsequence; monotonicity handles the rest.</p>",
    ]
    return title, body, ["real-analysis", "sequences-and-series", "limits"], ans


def t_compact():
    space = rng.choice(["[0,1]", "\\mathbb{R}", "(0,1)", "the unit circle S^1", "\\mathbb{Q}\\cap[0,1]", "the Cantor set", "[0,1]^2", "a finite set"])
    title = f"Is {space.replace(chr(92), '')} compact?"
    body = f"<p>With the usual topology, is {m(space) if '\\' in space or '[' in space or '(' in space else space} compact? Please explain using open covers.</p>" + ctx()
    ans = [
        f"<p>By Heine&ndash;Borel, a subset of {m('\\mathbb{R}^n')} is compact iff it is closed and bounded. Check both properties for {space}: a set that is not closed (a limit point is missing) or not bounded has an open cover with no finite subcover, e.g. {m('U_n = (-n, n)')} or {m('U_n = (1/n, 1)')}.</p>",
        f"<p>Sequential compactness is equivalent in metric spaces: every sequence in {space} must have a subsequence converging <em>inside</em> the set. Bolzano&ndash;Weierstrass gives a convergent subsequence for bounded sequences; closedness keeps the limit in the set.</p>",
    ]
    return title, body, ["general-topology", "compactness", "real-analysis"], ans


def t_connected():
    s = rng.choice(["the topologist's sine curve", "\\mathbb{R}\\setminus\\{0\\}", "the union of two disjoint open discs", "\\mathbb{Q}", "GL_n(\\mathbb{R})", "the circle minus a point", "an open interval", "the comb space"])
    title = f"Is {s.replace(chr(92), '')} connected or path-connected?"
    body = f"<p>Determine whether {m(s) if chr(92) in s else s} is connected, and whether it is path-connected. What is the difference between the two notions?</p>" + ctx()
    ans = [
        f"<p>A space is connected if it is not the union of two disjoint nonempty open sets; path-connected if any two points are joined by a continuous path {m('\\gamma: [0,1] \\to X')}. Path-connected implies connected, not conversely (the topologist's sine curve is the classic counterexample).</p><p>For {s}, try to separate it by a continuous map onto {m('\\{0, 1\\}')}; if none exists it is connected.</p>",
        f"<p>For {s}: continuous images of connected sets are connected, and the closure of a connected set is connected. Use these to build it from intervals, or use the determinant {m('\\det: X \\to \\mathbb{R}\\setminus\\{0\\}')} style arguments to split it.</p>",
    ]
    return title, body, ["general-topology", "connectedness", "path-connected"], ans


def t_open_sets():
    f = rng.choice(["x^2", "\\sin x", "e^x", "|x|", "x^3 - x", "\\arctan x"])
    title = f"Preimage of an open set under f(x) = {f.replace(chr(92), '')}"
    body = f"<p>Show that {m(f'f(x) = {f}')} is continuous using the topological definition: preimages of open sets are open. Is the image of an open set open too?</p>" + ctx()
    ans = [
        f"<p>It suffices to check preimages of open intervals {m('(a,b)')}, since they form a basis. For {m(f)}, {m('f^{-1}((a,b))')} is a finite union of open intervals by monotonicity on pieces.</p><p>Images of open sets need not be open: {m(f'f(x) = {f}')} can map an open interval onto an interval that contains an endpoint.</p>",
        f"<p>Equivalence with the {m('\\varepsilon')}-{m('\\delta')} definition: {m('f^{-1}(B_\\varepsilon(f(x)))')} open means it contains some {m('B_\\delta(x)')}. So continuity of {m(f)} follows from the usual limit laws.</p>",
    ]
    return title, body, ["general-topology", "continuity"], ans


def t_ode():
    k = rng.randint(2, 9)
    y0 = rng.randint(1, 9)
    title = f"Solve the differential equation y' = {k}y with y(0) = {y0}"
    body = f"<p>Solve {m(f'y\' = {k}y')}, {m(f'y(0) = {y0}')}. Is the solution unique?</p>" + ctx()
    ans = [
        f"<p>Separate variables: {m(f'\\frac{{dy}}{{y}} = {k}\\,dx')}, so {m(f'\\ln|y| = {k}x + C')} and {m(f'y = {y0}e^{{{k}x}}')} after using {m(f'y(0) = {y0}')}.</p>",
        f"<p>Uniqueness: if {m('z')} is another solution, {m(f'(z e^{{-{k}x}})\' = 0')}, so {m(f'z = Ce^{{{k}x}}')}. Picard&ndash;Lindel&ouml;f gives the same since the right side is Lipschitz in {m('y')}.</p>",
    ]
    return title, body, ["ordinary-differential-equations", "calculus"], ans


def t_complex():
    a, b = rng.randint(1, 6), rng.randint(1, 6)
    title = f"Modulus and argument of the complex number {a} + {b}i"
    body = f"<p>Write {m(f'z = {a} + {b}i')} in polar form and compute {m('z^{10}')}.</p>" + ctx()
    ans = [
        f"<p>{m(f'|z| = \\sqrt{{{a}^2 + {b}^2}} = \\sqrt{{{a*a+b*b}}}')} and {m(f'\\arg z = \\arctan\\frac{{{b}}}{{{a}}}')}. De Moivre: {m(f'z^{{10}} = {a*a+b*b}^5\\left(\\cos 10\\theta + i\\sin 10\\theta\\right)')}.</p>",
        f"<p>Use {m('z = re^{i\\theta}')} so that {m('z^{10} = r^{10}e^{10 i\\theta}')}. Computing {m(f'({a}+{b}i)^2')} first and squaring repeatedly also works.</p>",
    ]
    return title, body, ["complex-numbers", "algebra-precalculus"], ans


TEMPLATES = [
    (t_power_integral, 10), (t_sin_limit, 8), (t_derivative_product, 10), (t_p_series, 8), (t_taylor, 12),
    (t_eigen, 18), (t_determinant, 12), (t_linear_system, 12),
    (t_mod_power, 26), (t_gcd, 22), (t_prime_proof, 3),
    (t_dice, 14), (t_binomial_prob, 22), (t_expectation_geom, 5),
    (t_binomial_identity, 10), (t_arrangements, 10), (t_pigeonhole, 10),
    (t_group_order, 10), (t_polynomial_roots, 18), (t_inequality, 5),
    (t_uniform_continuity, 16), (t_sequence_limit, 8), (t_compact, 8),
    (t_connected, 8), (t_open_sets, 6), (t_ode, 12), (t_complex, 18),
]


def attr(s):
    # Posts.xml escapes markup and newlines inside attribute values.
    return escape(s, {'"': "&quot;", "\n": "&#xA;"})


def date(day):
    y, rest = 2012 + day // 365, day % 365
    mo, d = 1 + rest // 31, 1 + rest % 28
    return f"{y}-{mo:02d}-{d:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}"


def main():
    global MC
    rows = []
    seen_titles = set()
    post_id = 1000
    day = 0
    for template, count in TEMPLATES:
        made = 0
        attempts = 0
        while made < count and attempts < count * 20:
            attempts += 1
            MC = rng.random() < 0.6
            title, body, tags, answers = template()
            if title in seen_titles:
                continue
            seen_titles.add(title)
            made += 1
            day += rng.randint(1, 9)
            qid = post_id
            post_id += rng.randint(1, 3)
            nans = rng.choice([2, 2, 2, 3, 3]) if len(answers) >= 2 else 1
            chosen = rng.sample(answers, min(nans, len(answers)))
            ans_rows = []
            for a in chosen:
                aid = post_id
                post_id += rng.randint(1, 4)
                ans_rows.append((aid, a, rng.randint(-1, 40)))
            accepted = rng.choice([None] + [r[0] for r in ans_rows])
            tag_text = "|" + "|".join(tags) + "|" if qid % 5 else "".join(f"<{t}>" for t in tags)
            acc = f' AcceptedAnswerId="{accepted}"' if accepted else ""
            qdate = date(day)
            rows.append(f'  <row Id="{qid}" PostTypeId="1"{acc} CreationDate="{qdate}" Score="{rng.randint(-2, 60)}" ViewCount="{rng.randint(10, 20000)}" Body="{attr(body)}" Title="{attr(title)}" Tags="{attr(tag_text)}" AnswerCount="{len(ans_rows)}" ContentLicense="CC BY-SA 4.0" />')
            for aid, a, score in ans_rows:
                rows.append(f'  <row Id="{aid}" PostTypeId="2" ParentId="{qid}" CreationDate="{date(day + rng.randint(0, 3))}" Score="{score}" Body="{attr(a)}" ContentLicense="CC BY-SA 4.0" />')
    # One answer written before its question (it must still be joined).
    early = next(i for i, r in enumerate(rows) if 'PostTypeId="2"' in r)
    rows.insert(max(0, early - 1), rows.pop(early))
    # Deliberately bad rows: each must be skipped with its reason, nothing else lost.
    rows += [
        '  <row Id="9000001" PostTypeId="2" ParentId="123456789" CreationDate="2015-01-01T00:00:00.000" Score="1" Body="&lt;p&gt;An answer to a question that is not in this dump.&lt;/p&gt;" />',
        '  <row Id="9000002" PostTypeId="1" CreationDate="not a date" Score="1" Title="Bad date" Body="x" Tags="|algebra|" />',
        '  <row PostTypeId="1" CreationDate="2015-01-01T00:00:00.000" Score="1" Title="No id" Body="x" Tags="|algebra|" />',
        '  <row Id="9000003" PostTypeId="2" ParentId="abc" CreationDate="2015-01-01T00:00:00.000" Score="1" Body="x" />',
        '  <row Id="9000004" PostTypeId="1" CreationDate="2015-01-01T00:00:00.000" Score="1" Title="Broken &entity; here" Body="x" Tags="|algebra|" />',
        '  <row Id="9000005" PostTypeId="1" CreationDate="2015-01-01T00:00:00.000" Score="1" Title="Control &#x1; char" Body="x" Tags="|algebra|" />',
        '  <row Id="9000006" PostTypeId="5" CreationDate="2015-01-01T00:00:00.000" Score="0" Body="&lt;p&gt;Tag wiki text.&lt;/p&gt;" />',
        '  <row Id="9000007" PostTypeId="4" CreationDate="2015-01-01T00:00:00.000" Score="0" Body="Tag excerpt." />',
    ]
    print('\ufeff<?xml version="1.0" encoding="utf-8"?>\r\n<posts>\r\n' + "\r\n".join(rows) + "\r\n</posts>\r", end="\n")


if __name__ == "__main__":
    main()
