"""
    PyZygote

The Julia side of pyzygote: helpers for the Julia code that `pyzygote.julia.codegen`
generates from traced numpy programs, and the entry points the Python runtime calls.

Array contract: a numpy array of shape `(a, b, c)` is a Julia `Array` of size `(a, b, c)`
that holds the same element at the same logical index (numpy axis `k` is Julia dimension
`k + 1`). A numpy 0-d array is a Julia scalar (`Float64`, `Float32`, `Bool`, `Int64`). The
generated code makes numpy's conventions explicit: row-major reshapes, 0-based and
end-exclusive indices, reductions that drop the reduced axes, and flat positions (stored as
Julia column-major linear indices).

A generated program is a function `maker(consts...)` returning a closure
`f(x1, x2, ...) -> (out1, out2, ...)`; `f` always returns a Tuple and uses only
non-mutating operations, so Zygote can differentiate it. The entry points below take `f`
and a Tuple of arguments.
"""
module PyZygote

using ChainRulesCore: ChainRulesCore, NoTangent, ProjectTo, unthunk
using ForwardDiff: ForwardDiff
using LinearAlgebra: LinearAlgebra
using SpecialFunctions: SpecialFunctions
using Zygote: Zygote

# --- helpers for generated code -----------------------------------------------------------

# The generated code is evaluated in a module that only imports PyZygote, so it reaches
# these LinearAlgebra functions as `PyZygote.det` and `PyZygote.dot`.
const det = LinearAlgebra.det
const dot = LinearAlgebra.dot

"""
    broadcast_to(x, sz::Dims)

numpy's `broadcast_to`: `x` repeated to size `sz`. `x` is a number, or an array with
`length(sz)` dimensions whose size along each dimension `d` is `1` or `sz[d]`.

It has an `rrule` because it fills a new array in place, which Zygote cannot differentiate;
the cotangent is summed over the repeated dimensions.
"""
broadcast_to(x::Number, sz::Dims) = fill(x, sz)

function broadcast_to(x::AbstractArray, sz::Dims)
    y = similar(x, sz)
    y .= x
    return y
end

function ChainRulesCore.rrule(::typeof(broadcast_to), x, sz::Dims)
    project_x = ProjectTo(x)
    function broadcast_to_pullback(ȳ)
        return NoTangent(), project_x(_sum_to(x, unthunk(ȳ))), NoTangent()
    end
    return broadcast_to(x, sz), broadcast_to_pullback
end

# The sum of `ȳ` over the dimensions along which `x` was repeated, with the size of `x`.
_sum_to(::Number, ȳ) = sum(ȳ)

function _sum_to(x::AbstractArray, ȳ)
    dims = filter(d -> size(x, d) == 1 && size(ȳ, d) != 1, ntuple(identity, ndims(x)))
    return isempty(dims) ? ȳ : sum(ȳ; dims = dims)
end

"""
    scatter_add(v, idx, sz::Dims)

An array of zeros of size `sz` into which each `v[k]` is added at linear index `idx[k]`
(`idx` has the size of `v`, and repeated indices accumulate). A number `v` goes with an
integer `idx`. This is the transpose of `x[idx]`; numpy item assignment `y[i] = v` is traced
to it.

It has an `rrule` because it writes into a new array; the pullback gathers the cotangent
back, `ȳ[idx]`.
"""
function scatter_add(v::AbstractArray, idx::AbstractArray{<:Integer}, sz::Dims)
    y = zeros(eltype(v), sz)
    for k in eachindex(v, idx)
        y[idx[k]] = _add(y[idx[k]], v[k])
    end
    return y
end

function scatter_add(v::Number, idx::Integer, sz::Dims)
    y = zeros(typeof(v), sz)
    y[idx] = v
    return y
end

function ChainRulesCore.rrule(::typeof(scatter_add), v, idx, sz::Dims)
    project_v = ProjectTo(v)
    function scatter_add_pullback(ȳ)
        return NoTangent(), project_v(unthunk(ȳ)[idx]), NoTangent(), NoTangent()
    end
    return scatter_add(v, idx, sz), scatter_add_pullback
end

# numpy adds booleans as `or` (True + True is True); Julia's `true + true` is the integer 2,
# which an `Array{Bool}` cannot hold.
_add(a::Bool, b::Bool) = a | b
_add(a, b) = a + b

"""
    numpy_sum(x, dims)
    numpy_cumsum(x, dim)
    numpy_prod(x, dims)

numpy's `sum`, `cumsum` and `prod` of integers and booleans, in their own type: integers
narrower than 64 bits wrap (Base's `sum` and `prod` widen them with `add_sum` and
`mul_prod`), and booleans add as `|` ([`_add`](@ref)). `dims` is `:` or the dimensions
to reduce, which are dropped. Their results are integers, which carry no derivative, so
Zygote does not look inside: ChainRules' rule for `accumulate` refuses `dims` on a matrix,
and Zygote cannot go back through the array writes inside `reduce(op, x; dims, init)`.
"""
numpy_sum(x::Number, ::Colon) = x
numpy_sum(x::AbstractArray, ::Colon) = reduce(_add, x; init = zero(eltype(x)))
function numpy_sum(x::AbstractArray, dims)
    return dropdims(reduce(_add, x; dims = dims, init = zero(eltype(x))); dims = dims)
end

numpy_cumsum(x::AbstractArray, dim::Integer) = accumulate(_add, x; dims = dim)

numpy_prod(x::Number, ::Colon) = x
numpy_prod(x::AbstractArray, ::Colon) = reduce(*, x; init = one(eltype(x)))
function numpy_prod(x::AbstractArray, dims)
    return dropdims(reduce(*, x; dims = dims, init = one(eltype(x))); dims = dims)
end

ChainRulesCore.@non_differentiable numpy_sum(::Any, ::Any)
ChainRulesCore.@non_differentiable numpy_cumsum(::Any, ::Any)
ChainRulesCore.@non_differentiable numpy_prod(::Any, ::Any)

"""
    take(x, p)

numpy's `x.ravel()[p]` for positions known only at run time (traced integers, such as
`argsort` results): each entry of `p` is a 0-based row-major flat position in `x`, and the
result has the size of `p` (a number for an integer `p`).

It has an `rrule` whose pullback adds the cotangent back at the same positions with
[`put_add`](@ref).
"""
take(x::AbstractArray, p::Integer) = x[_linear_index(size(x), p)]
function take(x::AbstractArray, p::AbstractArray{<:Integer})
    return map(k -> x[_linear_index(size(x), k)], p)
end

function ChainRulesCore.rrule(::typeof(take), x::AbstractArray, p)
    project_x = ProjectTo(x)
    sz = size(x)
    function take_pullback(ȳ)
        ȳ isa ChainRulesCore.AbstractZero && return (NoTangent(), ȳ, NoTangent())
        return NoTangent(), project_x(put_add(unthunk(ȳ), p, sz)), NoTangent()
    end
    return take(x, p), take_pullback
end

# The Julia linear index of the element at 0-based row-major flat position `p` in an array of
# size `sz`: row-major positions of `sz` are column-major positions of `reverse(sz)`.
function _linear_index(sz::Dims, p::Integer)
    # `Base.prod`: this module's own `prod` (below) has methods for arrays only.
    if !(0 <= p < Base.prod(sz))
        msg = "position $p (0-based) is out of bounds for an array of $(Base.prod(sz)) elements"
        throw(ArgumentError(msg))
    end
    flipped = Tuple(CartesianIndices(reverse(sz))[p + 1])
    return LinearIndices(sz)[reverse(flipped)...]
end

"""
    put_add(v, p, sz::Dims)

Zeros of size `sz` into which each `v[k]` is added at the 0-based row-major flat position
`p[k]` (repeated positions accumulate); a number `v` goes with an integer `p`. The transpose
of [`take`](@ref), with an `rrule` whose pullback is `take`.
"""
put_add(v::Number, p::Integer, sz::Dims) = put_add(fill(v), fill(p), sz)

function put_add(v::AbstractArray, p::AbstractArray{<:Integer}, sz::Dims)
    y = zeros(eltype(v), sz)
    for k in eachindex(v, p)
        i = _linear_index(sz, p[k])
        y[i] = _add(y[i], v[k])
    end
    return y
end

function ChainRulesCore.rrule(::typeof(put_add), v, p, sz::Dims)
    project_v = ProjectTo(v)
    function put_add_pullback(ȳ)
        v̄ = ȳ isa ChainRulesCore.AbstractZero ? ȳ : project_v(take(unthunk(ȳ), p))
        return NoTangent(), v̄, NoTangent(), NoTangent()
    end
    return put_add(v, p, sz), put_add_pullback
end

"""
    argsort_along(x, d)

numpy's `argsort(x, axis = d - 1, kind = "stable")`: for each slice along dimension `d`, the
0-based positions along `d` that sort it. It compares values only, as numpy does (see
[`_sort_key`](@ref)), and `sortperm` keeps equal values in their order, as numpy's stable
sort does.
"""
function argsort_along(x::AbstractArray, d::Integer)
    v = map(_sort_key, x)
    # `sortperm(v; dims)` of a vector reaches `sort!` with a `dims` keyword, which vectors'
    # `sort!` does not take (JuliaLang/julia#55370).
    ndims(v) == 1 && return sortperm(v) .- 1
    cartesian = CartesianIndices(x)
    return map(k -> cartesian[k][d] - 1, sortperm(v; dims = d))
end

"""
    _sort_key(x)

The plain number under any ForwardDiff duals (ForwardDiff 1 orders tied duals by their
partials), with `-0.0` as `0.0`: `isless(-0.0, 0.0)` holds in Julia, while numpy's sorts and
`argmax` treat the two zeros as equal.
"""
function _sort_key(x::Real)
    v = primal(x)
    return iszero(v) ? zero(v) : v
end

"""
    argmax_along(x, d), argmin_along(x, d)

numpy's `argmax(x, axis = d - 1)` and `argmin`: the 0-based position along dimension `d` of
the first largest (smallest) value of each slice, or of its first NaN, as in numpy. A vector
gives a number.
"""
argmax_along(x::AbstractArray, d::Integer) = _arg_along(argmax, x, d)
argmin_along(x::AbstractArray, d::Integer) = _arg_along(argmin, x, d)

function _arg_along(pick, x::AbstractArray, d::Integer)
    v = map(_sort_key, x)
    ndims(x) == 1 && return pick(v) - 1
    return dropdims(map(I -> I[d] - 1, pick(v; dims = d)); dims = d)
end

ChainRulesCore.@non_differentiable argsort_along(::Any, ::Any)
ChainRulesCore.@non_differentiable argmax_along(::Any, ::Any)
ChainRulesCore.@non_differentiable argmin_along(::Any, ::Any)

"""
    numpy_searchsorted(a, v, right::Bool)

numpy's `searchsorted(a, v, side = right ? "right" : "left")` for a sorted vector `a`: for
each entry of `v`, how many entries of `a` are below it (not above it if `right`), found by
binary search. It orders as numpy's sort does, by [`_sort_key`](@ref): NaN last, `-0.0`
equal to `0.0`. A number `v` gives a number.
"""
function numpy_searchsorted(a::AbstractVector, v, right::Bool)
    # `by` applies to both sides of each comparison; Julia's searches return 1-based indices.
    function count_below(x)
        right && return searchsortedlast(a, x; by = _sort_key)
        return searchsortedfirst(a, x; by = _sort_key) - 1
    end
    return v isa AbstractArray ? map(count_below, v) : count_below(v)
end

ChainRulesCore.@non_differentiable numpy_searchsorted(::Any, ::Any, ::Any)

"""
    select(c::Bool, x, y)

numpy's `where(c, x, y)` for one element, used as `PyZygote.select.(c, x, y)`. It is
`ifelse` after promoting `x` and `y` to one type: with plain `ifelse.(c, x, y)`, an array of
ForwardDiff duals and a constant `Float64` branch would give an array of abstract element
type `Real`.
"""
select(c::Bool, x, y) = ifelse(c, promote(x, y)...)

"""
    fmax(x, y)

numpy's `fmax` for one element: the larger of `x` and `y`, ignoring a NaN unless both are
NaN (`max` propagates NaN, like numpy's `maximum`).
"""
function fmax(x::Real, y::Real)
    a, b = promote(x, y)
    return isnan(a) ? b : isnan(b) ? a : max(a, b)
end

"""
    fmin(x, y)

numpy's `fmin` for one element: the smaller of `x` and `y`, ignoring a NaN unless both are
NaN.
"""
function fmin(x::Real, y::Real)
    a, b = promote(x, y)
    return isnan(a) ? b : isnan(b) ? a : min(a, b)
end

"""
    nan_log(x), nan_log2(x), nan_log10(x), nan_log1p(x), nan_sqrt(x)
    nan_asin(x), nan_acos(x), nan_acosh(x), nan_atanh(x), nan_pow(x, y)
    nan_sin(x), nan_cos(x), nan_tan(x)

numpy's functions of real numbers outside their real domain: NaN, where Julia's throw a
`DomainError` (for `sin`, `cos` and `tan`, at `±Inf`). numpy evaluates both branches of
`np.where(x > 0, np.log(x), 0.0)`, so code written that way must run. The NaN is a constant:
its derivative only reaches a result through a branch that `np.where` discards.
"""
# The domain tests compare plain values: ForwardDiff 1 orders duals with equal values by
# their partials, so `1 < Dual(1.0, 1.0)` would make acos(1.0) NaN in a gradient.
nan_log(x::Real) = primal(x) < 0 ? _nan(x) : log(x)
nan_log2(x::Real) = primal(x) < 0 ? _nan(x) : log2(x)
nan_log10(x::Real) = primal(x) < 0 ? _nan(x) : log10(x)
nan_log1p(x::Real) = primal(x) < -1 ? _nan(x) : log1p(x)
nan_sqrt(x::Real) = primal(x) < 0 ? _nan(x) : sqrt(x)
nan_asin(x::Real) = abs(primal(x)) > 1 ? _nan(x) : asin(x)
nan_acos(x::Real) = abs(primal(x)) > 1 ? _nan(x) : acos(x)
nan_acosh(x::Real) = primal(x) < 1 ? _nan(x) : acosh(x)
nan_atanh(x::Real) = abs(primal(x)) > 1 ? _nan(x) : atanh(x)
nan_sin(x::Real) = isinf(primal(x)) ? _nan(x) : sin(x)
nan_cos(x::Real) = isinf(primal(x)) ? _nan(x) : cos(x)
nan_tan(x::Real) = isinf(primal(x)) ? _nan(x) : tan(x)
function nan_pow(x::Real, y::Real)
    px, py = primal(x), primal(y)
    # 0 ^ 0 is 1 with derivative 0 in both, as numpy's rule has it: ForwardDiff's
    # `Dual ^ Dual` gives 0 * Inf = NaN there (Zygote broadcasts `nan_pow` with duals).
    iszero(px) && iszero(py) && return one(x * y)
    px < 0 && return _negative_pow(x, y)
    # A zero base with the exponent as a plain number: `Dual ^ Dual` takes log(0) once the
    # base carries partials (a Hessian's nested duals; ForwardDiff 1's `iszero` reads them).
    # numpy's derivative in the exponent is 0 there.
    iszero(px) && return _zero_base_pow(x, py) + zero(y)
    return x^y
end

# 0 ^ p for a plain exponent p, its derivative p * 0 ^ (p - 1) applied to the partials that
# are not zero. ForwardDiff's `Dual ^ Real` scales every partial, and Zygote's broadcast gives
# a constant base a partial only in its own slot, so for 0 < p < 1 the exponent's slot got
# 0 * Inf = NaN (`data .^ p` with a zero in the data).
_zero_base_pow(x::Real, p::Real) = x^p
function _zero_base_pow(x::ForwardDiff.Dual{T}, p::Real) where {T}
    v = ForwardDiff.value(x)
    # x^0 is 1 with no derivative: p * 0^(p - 1) would be 0 * Inf (a Hessian of x^1 at 0)
    iszero(p) &&
        return ForwardDiff.Dual{T}(_zero_base_pow(v, p), zero(ForwardDiff.partials(x)))
    d = p * _zero_base_pow(v, p - one(p))
    scaled = map(q -> iszero(q) ? zero(q * d) : q * d, ForwardDiff.partials(x).values)
    return ForwardDiff.Dual{T}(_zero_base_pow(v, p), scaled)
end

# Zygote differentiates a 0-d broadcast with this rule (arrays go through duals): numpy's,
# where ChainRules' rule for `^` divides by a zero base that carries partials.
function ChainRulesCore.rrule(::typeof(nan_pow), x::Real, y::Real)
    z = nan_pow(x, y)
    function nan_pow_pullback(dz)
        dx = iszero(primal(y)) ? zero(z) : y * nan_pow(x, y - one(y))
        dy = primal(x) > 0 ? z * log(x) : zero(z)
        no = ChainRulesCore.NoTangent()
        return (no, dx * ChainRulesCore.unthunk(dz), dy * ChainRulesCore.unthunk(dz))
    end
    return z, nan_pow_pullback
end

# A negative base: through `-x`, because ForwardDiff's `Dual ^ Dual` takes `log` of the
# base even for an integer exponent. The exponent enters as a plain number: a negative
# number's power has no derivative in the exponent, which numpy's rule makes 0.
function _negative_pow(x, y)
    n = primal(y)
    isinf(n) && return (-x)^n # numpy: (-2.0) ** inf is inf, (-0.5) ** inf is 0
    # numpy (C's pow): (-inf) ** 2.5 is inf, (-inf) ** -0.5 is 0
    isinteger(n) || return isinf(primal(x)) ? (-x)^n : _nan(x * y)
    # an odd power keeps the sign (`iseven` of a float would convert it to an Integer,
    # which throws for 1e300)
    return iszero(rem(n, 2)) ? (-x)^n : -((-x)^n)
end

"""
    gammaln(x), polygamma_of(x, n)

scipy.special's `gammaln`, the log of `|Gamma(x)|` (SpecialFunctions' `loggamma` throws
where `Gamma(x) < 0`), and `polygamma(n, x)` (`digamma` for `n = 0`). ForwardDiff and
SpecialFunctions' ChainRules extension carry their derivatives. Zygote's broadcast may
make the order `n` a dual number; only its plain value is used.
"""
gammaln(x::Real) = first(SpecialFunctions.logabsgamma(x))
polygamma_of(x::Real, n::Real) = SpecialFunctions.polygamma(Int(primal(n)), x)

"""
    besselj_of(x, nu), bessely_of(x, nu), besseli_of(x, nu), besselk_of(x, nu)

scipy.special's Bessel functions `jv`, `yv`, `iv` and `kv` of a constant order `nu`:
SpecialFunctions' `besselj`, `bessely`, `besseli` and `besselk`, with NaN where scipy gives
NaN and SpecialFunctions throws a `DomainError` (a negative `x`, for a non-integer order of
`J` and `I` and for every order of `Y` and `K`) or a NaN `x` might reach its complex
routines. ForwardDiff and SpecialFunctions' ChainRules extension carry the derivatives in
`x`. Zygote's broadcast may make the order a dual number; only its plain value is used, in
the precision of `x`.
"""
besselj_of(x::Real, nu::Real) = _bessel(SpecialFunctions.besselj, x, nu, false)
bessely_of(x::Real, nu::Real) = _bessel(SpecialFunctions.bessely, x, nu, true)
besseli_of(x::Real, nu::Real) = _bessel(SpecialFunctions.besseli, x, nu, false)
besselk_of(x::Real, nu::Real) = _bessel(SpecialFunctions.besselk, x, nu, true)

function _bessel(f, x::Real, nu::Real, every_order::Bool)
    v = primal(x)
    isnan(v) && return _nan(x)
    v < 0 && (every_order || !isinteger(primal(nu))) && return _nan(x)
    return f(convert(float(typeof(v)), primal(nu)), x)
end

"""
    dawsn(x), exp1(x), ellipk(m), ellipe(m)

scipy.special's Dawson integral, exponential integral `E1` and complete elliptic integrals
of the first and second kind in the parameter `m = k^2`: SpecialFunctions' `dawson`,
`expint`, `ellipk` and `ellipe`, with NaN where scipy gives NaN and SpecialFunctions throws a
`DomainError` (`x < 0` for `expint`, `m > 1` for the elliptic integrals). DiffRules
(ForwardDiff) and SpecialFunctions' ChainRules extension (Zygote) carry the derivative of
`exp1`; those of the others are given below, as the NumPy engine computes them.
"""
dawsn(x::Real) = SpecialFunctions.dawson(x)
exp1(x::Real) = primal(x) < 0 ? _nan(x) : SpecialFunctions.expint(x)
ellipk(m::Real) = primal(m) > 1 ? _nan(m) : SpecialFunctions.ellipk(m)
ellipe(m::Real) = primal(m) > 1 ? _nan(m) : SpecialFunctions.ellipe(m)

# Derivatives of `dawsn`, `ellipk` and `ellipe` as the NumPy engine computes them
# (`pyzygote/primitives/special_integrals.py`), for duals and for Zygote: DiffRules' closed
# forms are 0 / 0 at m = 0 (NaN in forward mode) and `1 - 2x D(x)` cancels for large |x|.
# There the series are used: Maclaurin in m (DLMF 19.5.1-2), asymptotic in 1 / (2x^2) (DLMF
# 7.12.1).
const _ELLIPK_SLOPE = (
    0.25,
    0.28125,
    0.29296875,
    0.299072265625,
    0.3028106689453125,
    0.30533409118652344,
    0.30715155601501465,
    0.3085227683186531,
    0.30959402793087065,
    0.31045401134178974,
    0.3111595886402938,
    0.31174890604302163,
    0.3122485036488598,
    0.31267741642859725,
)
const _ELLIPE_SLOPE = (
    -0.25,
    -0.09375,
    -0.05859375,
    -0.042724609375,
    -0.0336456298828125,
    -0.027757644653320312,
    -0.023627042770385742,
    -0.020568184554576874,
    -0.018211413407698274,
    -0.016339684807462618,
    -0.01481712326858542,
    -0.013554300262740071,
    -0.012489940145954392,
    -0.01158064505291101,
)
const _DAWSON_SLOPE = (
    1.0,
    3.0,
    15.0,
    105.0,
    945.0,
    10395.0,
    135135.0,
    2027025.0,
    34459425.0,
    654729075.0,
    13749310575.0,
    316234143225.0,
    7905853580625.0,
    213458046676875.0,
    6190283353629375.0,
    1.9189878396251062e17,
)

function _ellipk_slope(m::Real)
    abs(primal(m)) < 0.05 &&
        return oftype(float(primal(m)), π) / 2 * evalpoly(m, _ELLIPK_SLOPE)
    return (ellipe(m) / (1 - m) - ellipk(m)) / (2 * m)
end

function _ellipe_slope(m::Real)
    abs(primal(m)) < 0.05 &&
        return oftype(float(primal(m)), π) / 2 * evalpoly(m, _ELLIPE_SLOPE)
    return (ellipe(m) - ellipk(m)) / (2 * m)
end

function _dawsn_slope(x::Real)
    abs(primal(x)) <= 10 && return 1 - 2 * x * dawsn(x)
    t = inv(2 * x^2)
    return -t * evalpoly(t, _DAWSON_SLOPE)
end

function dawsn(d::ForwardDiff.Dual{T}) where {T}
    x = ForwardDiff.value(d)
    return ForwardDiff.Dual{T}(dawsn(x), _dawsn_slope(x) * ForwardDiff.partials(d))
end

function ellipk(d::ForwardDiff.Dual{T}) where {T}
    m = ForwardDiff.value(d)
    return ForwardDiff.Dual{T}(ellipk(m), _ellipk_slope(m) * ForwardDiff.partials(d))
end

function ellipe(d::ForwardDiff.Dual{T}) where {T}
    m = ForwardDiff.value(d)
    return ForwardDiff.Dual{T}(ellipe(m), _ellipe_slope(m) * ForwardDiff.partials(d))
end

ChainRulesCore.@scalar_rule dawsn(x::Real) _dawsn_slope(x)
ChainRulesCore.@scalar_rule ellipk(m::Real) _ellipk_slope(m)
ChainRulesCore.@scalar_rule ellipe(m::Real) _ellipe_slope(m)

"""
    gammainc_of(x, a), gammaincc_of(x, a)

scipy.special's regularized incomplete gamma functions `gammainc(a, x)` (lower, `P`) and
`gammaincc(a, x)` (upper, `Q = 1 - P`) of a constant `a`: SpecialFunctions' `gamma_inc`,
with NaN where scipy gives NaN and `gamma_inc` throws a `DomainError` (`a < 0`, `x < 0`,
`a = x = 0`). The derivative in `x`, `±x^(a - 1) exp(-x) / Gamma(a)`, is given here to duals
and to Zygote, as the NumPy engine computes it (ForwardDiff 1, and 0.10 from 0.10.31, have a
dual method of `gamma_inc` in `x` too). Zygote's broadcast may make `a` a dual number; only its
plain value is used.
"""
gammainc_of(x::Real, a::Real) = _incomplete_gamma(x, a, 1)
gammaincc_of(x::Real, a::Real) = _incomplete_gamma(x, a, 2)

function _incomplete_gamma(x::Real, a::Real, part::Int)
    v, s = primal(x), convert(float(typeof(primal(x))), primal(a))
    (isnan(v) || isnan(s) || v < 0 || s < 0 || (iszero(v) && iszero(s))) && return _nan(x)
    return SpecialFunctions.gamma_inc(s, v, 0)[part]
end

function _incomplete_gamma(d::ForwardDiff.Dual{T}, a::Real, part::Int) where {T}
    x = ForwardDiff.value(d)
    slope = _gamma_density(x, primal(a)) * (part == 1 ? 1 : -1)
    return ForwardDiff.Dual{T}(
        _incomplete_gamma(x, a, part),
        slope * ForwardDiff.partials(d),
    )
end

function ChainRulesCore.rrule(::typeof(_incomplete_gamma), x::Real, a::Real, part::Int)
    slope = _gamma_density(x, primal(a)) * (part == 1 ? 1 : -1)
    return _incomplete_gamma(x, a, part), _pullback_in_x(slope)
end

# The pullback of `f(x, c1, c2)` whose derivative in `x` is `slope`, with constant parameters
# `c1` and `c2` (they get no tangent).
function _pullback_in_x(slope)
    no = ChainRulesCore.NoTangent()
    return ȳ -> (no, slope * ChainRulesCore.unthunk(ȳ), no, no)
end

# x^(a - 1) exp(-x) / Gamma(a), as the NumPy engine computes it: a power below x = 1 (exact at
# 0), logarithms above (no overflow of the power before exp(-x) underflows). Outside the domain
# of `gamma_inc` it is NaN or a number, as numpy's `**` and `gammaln` give, never a
# `DomainError`: Zygote's broadcasting hands every float argument to the dual method above, data
# with negative entries too (`np.where(x > 0, gammainc(a, x), 0.0)`), and `x^(a - 1)` of a
# negative `x` or `loggamma(a)` where `Gamma(a) < 0` would throw.
function _gamma_density(x::Real, a::Real)
    lognorm = gammaln(a)
    primal(x) < 1 && return nan_pow(x, a - 1) * exp(-x - lognorm)
    return exp((a - 1) * log(x) - x - lognorm)
end

"""
    betainc_of(x, a, b)

scipy.special's regularized incomplete beta function `betainc(a, b, x)` of constant `a` and
`b`: SpecialFunctions' `beta_inc`, with NaN where scipy gives NaN and `beta_inc` throws a
`DomainError` (`a < 0`, `b < 0`, `a = b = 0`, `x` outside [0, 1]). Its derivative in `x`, the
beta density, is given to duals and to Zygote as the NumPy engine computes it. Zygote's
broadcast may make `a` and `b` dual numbers; only their plain values are used.
"""
function betainc_of(x::Real, a::Real, b::Real)
    v = primal(x)
    s, r = _beta_parameters(v, a, b)
    _outside_beta(v, s, r) && return _nan(x)
    return first(SpecialFunctions.beta_inc(s, r, v))
end

function betainc_of(d::ForwardDiff.Dual{T}, a::Real, b::Real) where {T}
    x = ForwardDiff.value(d)
    slope = convert(typeof(x), _beta_density(x, a, b))
    return ForwardDiff.Dual{T}(betainc_of(x, a, b), slope * ForwardDiff.partials(d))
end

function ChainRulesCore.rrule(::typeof(betainc_of), x::Real, a::Real, b::Real)
    return betainc_of(x, a, b), _pullback_in_x(_beta_density(x, a, b))
end

_beta_parameters(v::Real, a::Real, b::Real) = (
    convert(float(typeof(v)), primal(a)),
    convert(float(typeof(v)), primal(b)),
)

function _outside_beta(v::Real, s::Real, r::Real)
    nan = isnan(v) || isnan(s) || isnan(r)
    return nan || s < 0 || r < 0 || (iszero(s) && iszero(r)) || v < 0 || v > 1
end

# x^(a - 1) (1 - x)^(b - 1) / B(a, b) on [0, 1], NaN outside, as the NumPy engine computes it:
# near each end the factor that vanishes or diverges there as a power (`nan_pow`, exact at the
# end), the rest through logarithms; through logarithms alone where 1 / B(a, b) overflows.
function _beta_density(x::Real, a::Real, b::Real)
    v = primal(x)
    s, r = _beta_parameters(v, a, b)
    _outside_beta(v, s, r) && return _nan(x)
    logbeta = SpecialFunctions.logbeta(s, r)
    if logbeta > -600
        v < 0.5 && return nan_pow(x, s - 1) * exp((r - 1) * log1p(-x) - logbeta)
        return nan_pow(1 - x, r - 1) * exp((s - 1) * log(x) - logbeta)
    end
    # a and b are large here: the density vanishes at both ends
    (iszero(v) || isone(v)) && return zero(x)
    return exp((s - 1) * log(x) + (r - 1) * log1p(-x) - logbeta)
end

# The NumPy engine's MAX_TERMS (pyzygote/primitives/incomplete_gamma.py).
const GAMMAINC_MAX_TERMS = 10_000

"""
    gammainc_da(a, x, n, part)

The `n`-th derivative in `a` of scipy's `gammainc(a, x)` (`part = 1`, `P`) or `gammaincc(a, x)`
(`part = 2`, `Q = 1 - P`) of a traced `a` (`n = 0`: the function itself, as
[`gammainc_of`](@ref) computes it), as pyzygote's NumPy engine computes it: truncated Taylor
series in `a` (jets) carried through `P`'s power series where `x < a + 1` and through `Q`'s
continued fraction (the modified Lentz method) elsewhere, in `Float64`. Duals and Zygote get
the derivative in `a` as order `n + 1` and the one in `x` as the `n`-th derivative in `a` of
the gamma density `x^(a - 1) exp(-x) / Gamma(a)` ([`_gamma_density_da`](@ref)); no rule of
SpecialFunctions or ForwardDiff is differentiated. Zygote's broadcast may make `n` and
`part` dual numbers; only their plain values are used.
"""
function gammainc_da(a::Real, x::Real, n::Real, part::Real)
    return _gammainc_da(promote(a, x)..., Int(primal(n)), Int(primal(part)))
end

function _gammainc_da(a::Real, x::Real, order::Int, part::Int)
    order == 0 && return _incomplete_gamma(x, a, part)
    r = _gammainc_derivative_in_a(Float64(a), Float64(x), order, part)
    return convert(float(typeof(a)), r)
end

function _gammainc_da(
    a::ForwardDiff.Dual{T},
    x::ForwardDiff.Dual{T},
    order::Int,
    part::Int,
) where {T}
    s, v = ForwardDiff.value(a), ForwardDiff.value(x)
    slope_x = _gamma_density_da(s, v, order) * (part == 1 ? 1 : -1)
    return ForwardDiff.Dual{T}(
        _gammainc_da(s, v, order, part),
        _gammainc_da(s, v, order + 1, part) * ForwardDiff.partials(a) +
            slope_x * ForwardDiff.partials(x),
    )
end

function ChainRulesCore.rrule(::typeof(gammainc_da), a::Real, x::Real, n::Real, part::Real)
    s, v = promote(a, x)
    order, p = Int(primal(n)), Int(primal(part))
    slope_a = _gammainc_da(s, v, order + 1, p)
    slope_x = _gamma_density_da(s, v, order) * (p == 1 ? 1 : -1)
    function gammainc_da_pullback(ȳ)
        no = ChainRulesCore.NoTangent()
        δ = ChainRulesCore.unthunk(ȳ)
        return (no, slope_a * δ, slope_x * δ, no, no)
    end
    return _gammainc_da(s, v, order, p), gammainc_da_pullback
end

# 0 where P is constant (x = 0, x = inf, a = inf), NaN where scipy's value is NaN and at a = 0
function _gammainc_derivative_in_a(a::Float64, x::Float64, order::Int, part::Int)
    (isnan(a) || isnan(x) || a <= 0 || x < 0 || (isinf(a) && isinf(x))) && return NaN
    (iszero(x) || isinf(x) || isinf(a)) && return 0.0
    n = order + 1
    scale = factorial(order) * (part == 1 ? 1.0 : -1.0)
    x < a + 1 && return _gammainc_series_jet(a, x, n)[n] * scale
    return -_gammainc_fraction_jet(a, x, n)[n] * scale
end

# Truncated Taylor series in a: coefficient j + 1 is the j-th derivative over j!.
function _jet_mul(u::Vector{Float64}, v::Vector{Float64})
    return [sum(u[i] * v[k + 1 - i] for i in 1:k) for k in eachindex(u)]
end

function _jet_div(u::Vector{Float64}, v::Vector{Float64})
    w = similar(u)
    for k in eachindex(u)
        w[k] = (u[k] - sum((v[i] * w[k + 1 - i] for i in 2:k); init = 0.0)) / v[1]
    end
    return w
end

function _jet_exp(u::Vector{Float64})
    w = similar(u)
    w[1] = exp(u[1])
    for k in 2:length(u)
        w[k] = sum((j - 1) * u[j] * w[k + 1 - j] for j in 2:k) / (k - 1)
    end
    return w
end

# `value + slope * da` to n coefficients
function _linear_jet(value::Float64, slope::Float64, n::Int)
    w = zeros(n)
    w[1] = value
    n > 1 && (w[2] = slope)
    return w
end

# a log(x) - x - loggamma(a + shift)
function _log_prefactor(a::Float64, x::Float64, shift::Float64, n::Int)
    b = a + shift
    w = zeros(n)
    w[1] = a * log(x) - x - SpecialFunctions.loggamma(b)
    n > 1 && (w[2] = log(x) - SpecialFunctions.digamma(b))
    for j in 3:n
        w[j] = -SpecialFunctions.polygamma(j - 2, b) / factorial(j - 1)
    end
    return w
end

# P = x^a exp(-x) / Gamma(a + 1) * sum_k x^k / ((a + 1) ... (a + k)), for x < a + 1
function _gammainc_series_jet(a::Float64, x::Float64, n::Int)
    term = _linear_jet(1.0, 0.0, n)
    total = copy(term)
    for k in 1:GAMMAINC_MAX_TERMS
        r = a + k
        quotient = similar(term) # term / (r + da), then times x
        quotient[1] = term[1] / r
        for j in 2:n
            quotient[j] = (term[j] - quotient[j - 1]) / r
        end
        term = quotient .* x
        total .+= term
        if all(abs.(term) .<= eps() .* abs.(total))
            return _jet_mul(_jet_exp(_log_prefactor(a, x, 1.0, n)), total)
        end
    end
    return fill(NaN, n)
end

# Q = x^a exp(-x) / Gamma(a) / (x + 1 - a - 1 (1 - a) / (x + 3 - a - 2 (2 - a) / ...)), for
# x >= a + 1, by the modified Lentz method
function _gammainc_fraction_jet(a::Float64, x::Float64, n::Int)
    one_jet = _linear_jet(1.0, 0.0, n)
    d = _jet_div(one_jet, _linear_jet(x + 1 - a, -1.0, n))
    c = _linear_jet(1.0e300, 0.0, n)
    h = copy(d)
    for i in 1:GAMMAINC_MAX_TERMS
        an = _linear_jet(-i * (i - a), Float64(i), n)
        bn = _linear_jet(x + 1 - a + 2i, -1.0, n)
        d = _jet_div(one_jet, _jet_mul(an, d) .+ bn)
        c = bn .+ _jet_div(an, c)
        factor = _jet_mul(d, c)
        h = _jet_mul(h, factor)
        factor[1] -= 1
        scale = [abs(h[1]) / (x - a + 1)^(j - 1) for j in 1:n]
        if all(abs.(factor) .* abs(h[1]) .<= eps() .* (abs.(h) .+ scale))
            return _jet_mul(_jet_exp(_log_prefactor(a, x, 0.0, n)), h)
        end
    end
    return fill(NaN, n)
end

"""
    _gamma_density_da(a, x, n)

The `n`-th derivative in `a` of the gamma density `f = x^(a - 1) exp(-x) / Gamma(a)`, the
derivative in `x` of [`gammainc_da`](@ref): `f = exp(h)`, `h' = log(x) - digamma(a)`,
`h⁽ʲ⁾ = -polygamma(j - 1, a)`, `f⁽ᵏ⁾ = Σⱼ binomial(k - 1, j) h⁽ʲ⁺¹⁾ f⁽ᵏ⁻¹⁻ʲ⁾`; at `x = 0` the
limits from above (0 where `a > 1`; for `n = 0`, 1 at `a = 1` and `Inf` below), NaN where none
exists. Duals get `f⁽ⁿ⁺¹⁾` in `a` and `((a - 1) / x - 1) f⁽ⁿ⁾ + n f⁽ⁿ⁻¹⁾ / x` in `x`.
"""
function _gamma_density_da(a::Real, x::Real, order::Int)
    s, v = Float64(a), Float64(x)
    return convert(float(typeof(a)), _gamma_density_da_of(s, v, order))
end

function _gamma_density_da_of(a::Float64, x::Float64, order::Int)
    if !(x > 0)
        (iszero(x) && a > 1) && return 0.0
        (iszero(x) && order == 0) && return a == 1 ? 1.0 : (a < 1 ? Inf : NaN)
        return NaN
    end
    a < 0 && return NaN # P is NaN there; loggamma throws where Gamma(a) < 0
    f = _gamma_density(x, a)
    order == 0 && return f
    h = [log(x) - SpecialFunctions.digamma(a)]
    for j in 2:order
        push!(h, -SpecialFunctions.polygamma(j - 1, a))
    end
    fs = [f]
    for k in 1:order
        push!(fs, sum(binomial(k - 1, j) * h[j + 1] * fs[k - j] for j in 0:(k - 1)))
    end
    return fs[end]
end

function _gamma_density_da(
    a::ForwardDiff.Dual{T},
    x::ForwardDiff.Dual{T},
    order::Int,
) where {T}
    s, v = ForwardDiff.value(a), ForwardDiff.value(x)
    f = _gamma_density_da(s, v, order)
    slope_x = ((s - 1) / v - 1) * f
    order > 0 && (slope_x += order * _gamma_density_da(s, v, order - 1) / v)
    return ForwardDiff.Dual{T}(
        f,
        _gamma_density_da(s, v, order + 1) * ForwardDiff.partials(a) +
            slope_x * ForwardDiff.partials(x),
    )
end

"""
    erf(x), erfc(x), erfcx(x), erfinv(x), erfcinv(x), log_ndtr(x)

scipy.special's error functions: SpecialFunctions' own, whose derivatives ForwardDiff and
SpecialFunctions' ChainRules extension know (`erfcx`'s are [`erfcx_derivative`](@ref)'s), with NaN outside the domain of `erfinv` and
`erfcinv` as in scipy (SpecialFunctions throws a `DomainError`, and numpy evaluates both
branches of `np.where`), and `log_ndtr`, the log of the standard normal distribution's CDF,
with its relative precision in both tails: `logerfc` for the lower one, `log1p` for the upper
one, where the CDF is close to 1.
"""
const erf = SpecialFunctions.erf
const erfc = SpecialFunctions.erfc
erfcx(x::Real) = SpecialFunctions.erfcx(x)

erfinv(x::Real) = abs(primal(x)) > 1 ? _nan(x) : SpecialFunctions.erfinv(x)
erfcinv(x::Real) = 0 <= primal(x) <= 2 ? SpecialFunctions.erfcinv(x) : _nan(x)

function log_ndtr(x::Real)
    y = x / sqrt(oftype(x, 2))
    return primal(x) > 0 ?
        log1p(-SpecialFunctions.erfc(y) / 2) :
        SpecialFunctions.logerfc(-y) - log(oftype(y, 2))
end

"""
    mills_ratio(x)

The inverse Mills ratio `pdf(x) / cdf(x)` of the standard normal distribution, the
derivative of [`log_ndtr`](@ref), whose own derivative is `-r (x + r)`. Below zero it is
`sqrt(2 / pi) / erfcx(-x / sqrt(2))`, precise however far into the tail; above, `cdf` is
close to 1 and `pdf` small.

Both functions carry their derivatives themselves (`log_ndtr`'s is
[`log_ndtr_slope`](@ref)), for ForwardDiff's duals (Zygote's broadcasting, `jvp`, `hessian`)
and as ChainRules rules, as pyzygote's NumPy engine does: the rule of `logerfc` that they
would otherwise reach subtracts two numbers of size `x^2 / 2`.
"""
function mills_ratio(x::Real)
    primal(x) < 0 &&
        return 2 /
            sqrt(oftype(x, pi)) /
            sqrt(oftype(x, 2)) /
            SpecialFunctions.erfcx(-x / sqrt(oftype(x, 2)))
    return exp(-x^2 / 2 - log_ndtr(x)) / sqrt(2 * oftype(x, pi))
end

# The value may itself be a dual (a Hessian's nested ones): the recursion handles nesting.
function mills_ratio(d::ForwardDiff.Dual{T}) where {T}
    x = ForwardDiff.value(d)
    r = mills_ratio(x)
    return ForwardDiff.Dual{T}(r, -(r * (x + r)) * ForwardDiff.partials(d))
end

function log_ndtr(d::ForwardDiff.Dual{T}) where {T}
    x = ForwardDiff.value(d)
    return ForwardDiff.Dual{T}(log_ndtr(x), log_ndtr_slope(x) * ForwardDiff.partials(d))
end

"""
    log_ndtr_slope(x)

The derivative of [`log_ndtr`](@ref), the inverse Mills ratio, written so that its own
derivatives keep their precision. Below zero it is the derivative of
`log(erfcx(y) / 2) - y^2` for `y = -x / sqrt(2)`: there the Mills ratio's own rule
`-r (x + r)` subtracts numbers near `x^2`, where [`erfcx_derivative`](@ref)'s add up.
"""
function log_ndtr_slope(x::Real)
    primal(x) >= 0 && return mills_ratio(x)
    y = -x / sqrt(oftype(x, 2))
    return (2 * y - erfcx_derivative(y, 1) / erfcx(y)) / sqrt(oftype(x, 2))
end

# A plain number's first derivative needs no more than the Mills ratio (one `erfcx`, not the
# downward recurrence); only its own derivatives, through duals, need the form above.
log_ndtr_slope(x::AbstractFloat) = mills_ratio(x)

ChainRulesCore.@scalar_rule log_ndtr(x::Real) log_ndtr_slope(x)
ChainRulesCore.@scalar_rule mills_ratio(x::Real) -(Ω * (x + Ω))

# The NumPy engine's ERFCX_DOWNWARDS_FROM and ERFCX_DOWNWARDS_STEPS
# (pyzygote/primitives/error_function.py): the engines compute the same numbers.
const ERFCX_DOWNWARDS_FROM = 2
const ERFCX_DOWNWARDS_STEPS = 80

"""
    erfcx_derivative(x, n)

The `n`-th derivative of `erfcx` at `x`, as pyzygote's NumPy engine computes it. The closed
form `2x * erfcx(x) - 2 / sqrt(pi)` (ForwardDiff's and SpecialFunctions' rule) subtracts two
numbers near `2 / sqrt(pi)` for large `x`, and each order built from the one below loses
another factor `x^2`. The derivatives satisfy `e⁽ᵐ⁺¹⁾ = 2x e⁽ᵐ⁾ + 2m e⁽ᵐ⁻¹⁾`, of whose
solutions they are the one that shrinks relative to the others (the derivatives of
`exp(x^2)`): from `x = 2` they are found by running it downwards (Miller's algorithm),
scaled by `erfcx(x)` itself. Zygote's broadcast may make the order `n` a dual number; only
its plain value is used.
"""
function erfcx_derivative(x::Real, n::Real)
    order = Int(primal(n))
    primal(x) < ERFCX_DOWNWARDS_FROM && return _erfcx_upwards(x, order)
    isinf(x) && return zero(x)
    return _erfcx_downwards(x, order)
end

# Narrow floats in Float64, then rounded, as the NumPy engine computes them: in Float32 the
# upward recurrence loses up to ~200 ulp by order 5 near x = 2.
function erfcx_derivative(x::Union{Float16, Float32}, n::Real)
    return oftype(x, erfcx_derivative(Float64(x), n))
end

function _erfcx_upwards(x::Real, order::Int)
    previous = SpecialFunctions.erfcx(x)
    current = 2 * x * previous - 2 / sqrt(oftype(x, pi))
    for m in 1:(order - 1)
        previous, current = current, 2 * x * current + 2 * m * previous
    end
    return current
end

function _erfcx_downwards(x::Real, order::Int)
    # the recurrence's values from order + 80 down, up to a common factor
    above, current, kept = zero(x), one(x), one(x)
    for m in (order + ERFCX_DOWNWARDS_STEPS):-1:1
        m == order && (kept = current)
        # (above - 2x current) / 2m, written so that 2x cannot overflow (x > floatmax / 2)
        above, current = current, (above / 2 - x * current) / m
        # keep the values near 1: for large x each step grows them by x
        scale = inv(abs(current))
        above, current, kept = above * scale, current * scale, kept * scale
    end
    return kept * (SpecialFunctions.erfcx(x) / current)
end

function erfcx(d::ForwardDiff.Dual{T}) where {T}
    x = ForwardDiff.value(d)
    return ForwardDiff.Dual{T}(erfcx(x), erfcx_derivative(x, 1) * ForwardDiff.partials(d))
end

# Families of derivatives indexed by their order (`erfcx_derivative`, `exprel_derivative`):
# the derivative of member `n` is member `n + 1`, in forward mode (duals) and in reverse mode.
function _dual_of_order(f, d::ForwardDiff.Dual{T}, n::Real) where {T}
    x = ForwardDiff.value(d)
    order = Int(primal(n))
    return ForwardDiff.Dual{T}(f(x, order), f(x, order + 1) * ForwardDiff.partials(d))
end

function _rrule_of_order(f, x::Real, n::Real)
    order = Int(primal(n))
    slope = f(x, order + 1)
    function order_pullback(ȳ)
        no = ChainRulesCore.NoTangent()
        return (no, slope * ChainRulesCore.unthunk(ȳ), no)
    end
    return f(x, order), order_pullback
end

erfcx_derivative(d::ForwardDiff.Dual, n::Real) = _dual_of_order(erfcx_derivative, d, n)

ChainRulesCore.@scalar_rule erfcx(x::Real) erfcx_derivative(x, 1)

function ChainRulesCore.rrule(::typeof(erfcx_derivative), x::Real, n::Real)
    return _rrule_of_order(erfcx_derivative, x, n)
end

"""
    exprel_derivative(x, n)

The `n`-th derivative of scipy's `exprel(x) = (exp(x) - 1) / x` (`n = 0`: `exprel` itself),
`E_n(x) = ∫₀¹ sⁿ exp(x s) ds`, as pyzygote's NumPy engine computes it
(`pyzygote/primitives/exprel.py`). Above `|x| = n + 1` the recurrence
`E_n = (exp(x) - n E_(n-1)) / x` is stable; nearer 0, where derivatives of the formula cancel,
a series of positive terms gives it. Only the plain value of the order `n` is used.
"""
function exprel_derivative(x::Real, n::Real)
    order = Int(primal(n))
    abs(x) <= order + 1 && return _exprel_series(x, order)
    e = exp(x)
    current = expm1(x) / x
    for m in 1:order
        current = (e - m * current) / x
    end
    # past x = 709 exp(x) overflows, and Inf - Inf is NaN: every order is Inf there
    return isnan(current) && x > 0 ? oftype(current, Inf) : current
end

# Narrow floats in Float64, then rounded, as the NumPy engine computes them.
function exprel_derivative(x::Union{Float16, Float32}, n::Real)
    return oftype(x, exprel_derivative(Float64(x), n))
end

# The NumPy engine's series_terms: the last term is below 1e-20 of the sum.
_exprel_terms(order::Int) = 40 + 3 * order

function _exprel_series(x::Real, order::Int)
    total = zero(x)
    if x >= 0
        # sum xʲ / (j! (j + n + 1))
        term = one(x)
        for j in 0:(_exprel_terms(order) - 1)
            total += term / (j + order + 1)
            term *= x / (j + 1)
        end
        return total
    end
    # exp(x) sum |x|ʲ n! / (j + n + 1)!
    term = one(x) / (order + 1)
    for j in 0:(_exprel_terms(order) - 1)
        total += term
        term *= -x / (j + order + 2)
    end
    return exp(x) * total
end

exprel_derivative(d::ForwardDiff.Dual, n::Real) = _dual_of_order(exprel_derivative, d, n)

function ChainRulesCore.rrule(::typeof(exprel_derivative), x::Real, n::Real)
    return _rrule_of_order(exprel_derivative, x, n)
end

_nan(x::Real) = convert(float(typeof(x)), NaN)

ChainRulesCore.@non_differentiable _nan(::Any)

"""
    int_mod(x, y), int_fld(x, y)

numpy's `%` and `//` of two integers: `0` where `y` is zero (numpy warns and gives 0,
where Julia's `mod` and `fld` throw a `DivideError`), and wrapping at
`typemin // -1`, as numpy does.
"""
function int_mod(x::Integer, y::Integer)
    T = promote_type(typeof(x), typeof(y))
    return iszero(y) || y == -1 ? zero(T) : mod(x, y)
end

function int_fld(x::Integer, y::Integer)
    T = promote_type(typeof(x), typeof(y))
    iszero(y) && return zero(T)
    # `-x` wraps at typemin, where `fld` throws
    y == -1 && return -T(x)
    return fld(x, y)
end

# Zygote's broadcasting wraps the entries of integer arrays in ForwardDiff duals too.
int_mod(x::Real, y::Real) = int_mod(primal(x), primal(y))
int_fld(x::Real, y::Real) = int_fld(primal(x), primal(y))

"""
    remainder(x, y)

numpy's `remainder` (`x % y`) of floats: Julia's `mod`, with the sign of `y`, and with the
NumPy engine's derivatives, 1 in `x` and `-fld(x, y)` in `y`, also where `x / y` is an
integer (`x = 0` among them), where the rules of DiffRules (ForwardDiff) and ChainRules for
`mod` give NaN, so that `theta % (2 * pi)` at `theta = 0` had a NaN gradient. Zygote
broadcasts it over arrays with ForwardDiff duals, and takes its `rrule` for numbers.
"""
remainder(x::Real, y::Real) = _remainder(promote(x, y)...)

_remainder(x::T, y::T) where {T <: AbstractFloat} = mod(x, y)

# Both arguments promoted to the outermost dual type; nested duals (a Hessian's) are peeled
# one level per call. A zero partial of `y` adds nothing rather than `0 * fld(x, y)`, NaN
# where `fld` is (an infinite `x` or `y`, a zero `y`).
function _remainder(
    x::ForwardDiff.Dual{T, V, N},
    y::ForwardDiff.Dual{T, V, N},
) where {T, V, N}
    vx, vy = ForwardDiff.value(x), ForwardDiff.value(y)
    q = fld(primal(vx), primal(vy))
    dx, dy = ForwardDiff.partials(x).values, ForwardDiff.partials(y).values
    parts = map((a, b) -> iszero(b) ? a : a - q * b, dx, dy)
    return ForwardDiff.Dual{T}(remainder(vx, vy), parts)
end

function ChainRulesCore.rrule(::typeof(remainder), x::Real, y::Real)
    q = fld(primal(x), primal(y))
    function remainder_pullback(dz)
        g = unthunk(dz)
        return NoTangent(), g, -q * g
    end
    return remainder(x, y), remainder_pullback
end

"""
    astype_int(T, x)

numpy's `x.astype(T)` into an integer type `T`, which never throws (Julia's `trunc(T, v)`
and `T(v)` throw an `InexactError`): floats truncate toward zero; a NaN, an infinity or a
float outside `T`'s range becomes what numpy's vectorized conversion gives on x86-64
(numpy leaves it to the hardware, and its scalar loop differs for `UInt32`); and
integers wrap (`300` as `UInt8` is `44`). It has no derivative.
"""
astype_int(::Type{T}, x::AbstractArray) where {T <: Integer} = map(v -> _to_int(T, v), x)
astype_int(::Type{T}, x::Real) where {T <: Integer} = _to_int(T, x)

ChainRulesCore.@non_differentiable astype_int(::Any, ::Any)

_to_int(::Type{T}, v::Integer) where {T <: Integer} = v % T

function _to_int(::Type{T}, v::Real) where {T <: Integer}
    w = primal(v)
    if T <: Signed && sizeof(T) >= 4
        inside = isfinite(w) && typemin(T) <= trunc(w) < float(typemax(T)) + 1
        return inside ? trunc(T, w) : typemin(T)
    elseif T === UInt32
        w >= 2.0^32 && return zero(T)
        # below -2^31, and NaN
        w >= -2.0^31 || return T(2)^31
        return trunc(Int64, w) % T
    elseif T === UInt64
        w >= 2.0^64 && return zero(T)
        0 <= w && return trunc(UInt64, w)
        return _to_int(Int64, w) % T
    end
    # Int8, Int16, UInt8 and UInt16: through Int32, then wrapped
    return _to_int(Int32, w) % T
end

"""
    absolute(x)

numpy's `absolute` for one real number, with derivative 0 at 0 as numpy's rule has it.
Zygote broadcasts `abs` with ForwardDiff duals, whose derivative (DiffRules) is the sign
bit's: 1 at 0.0 and -1 at -0.0.
"""
absolute(x::Real) = iszero(primal(x)) ? zero(x) : abs(x)

"""
    sign(x)

numpy's `sign` for one real number (-1, 0 or 1, NaN for NaN), with derivative 0 everywhere.
`Base.sign` returns `typeof(one(x))(x)` at zero, which keeps a ForwardDiff dual's partials,
so Zygote's forward-mode broadcasting would give the derivative 1 at exactly 0.
"""
function sign(x::Real)
    v = primal(x)
    return ifelse(
        v > 0,
        one(x),
        ifelse(v < 0, -one(x), ifelse(isnan(v), oftype(x, v), zero(x))),
    )
end

"""
    prod(x; dims = :)

`Base.prod`, with an `rrule` that does not divide: ChainRules' rule finds zero factors with
`iszero`, which ForwardDiff 1 answers `false` for a dual whose value is zero but whose
partials are not, so a Hessian through a product with a zero factor came out 0/0 = NaN.
Here the derivative with respect to each factor is the product of the other factors of its
slice, from running products on either side of it.
"""
prod(x::AbstractArray; dims = :) = Base.prod(x; dims = dims)

function ChainRulesCore.rrule(::typeof(prod), x::AbstractArray{<:Real}; dims = :)
    project_x = ProjectTo(x)
    function prod_pullback(ȳ)
        return NoTangent(), project_x(unthunk(ȳ) .* _prod_of_others(x, dims))
    end
    return prod(x; dims = dims), prod_pullback
end

_prod_of_others(x::AbstractArray, ::Colon) = reshape(_others(vec(x)), size(x))

function _prod_of_others(x::AbstractArray, dims)
    # mapslices reads a first slice even when a kept dimension is empty
    isempty(x) && return zero(x)
    return mapslices(s -> reshape(_others(vec(s)), size(s)), x; dims = dims)
end

# `o[i]` is the product of `v[j]` over all `j != i`.
function _others(v::AbstractVector)
    n = length(v)
    n == 0 && return copy(v)
    before = [one(eltype(v)); cumprod(v)[1:(n - 1)]]
    after = [reverse(cumprod(reverse(v)))[2:n]; one(eltype(v))]
    return before .* after
end

"""
    cholesky_lower(A)

numpy's `linalg.cholesky`: the lower-triangular `L` with `A = L * L'`, as a `Matrix`. Like
numpy (LAPACK's `potrf` with `'L'`), it reads only the lower triangle of `A`.

It has an `rrule` so that the cotangent follows that reading: zero above the diagonal, and a
strictly lower entry collects the cotangents of both positions it stands for. ChainRules'
rule for `cholesky(::Symmetric)` returns a symmetric cotangent instead, which would put
half of each entry's gradient in the triangle that numpy never reads.
"""
function cholesky_lower(A::AbstractMatrix)
    return Matrix(LinearAlgebra.cholesky(LinearAlgebra.Symmetric(A, :L)).L)
end

function ChainRulesCore.rrule(::typeof(cholesky_lower), A::AbstractMatrix{<:Real})
    L = cholesky_lower(A)
    project_A = ProjectTo(A)
    function cholesky_lower_pullback(ΔL)
        # With dL = L Φ(L⁻¹ dS L⁻ᵀ), where Φ keeps the strict lower triangle and half the
        # diagonal and dS is the symmetric matrix built from the lower triangle of dA.
        ΔL isa ChainRulesCore.AbstractZero && return (NoTangent(), ΔL)
        P = LinearAlgebra.tril(L' * unthunk(ΔL))
        P = P - LinearAlgebra.Diagonal(P) / 2
        Lt = LinearAlgebra.LowerTriangular(L)
        return NoTangent(), project_A(_lower_cotangent(Lt' \ (P / Lt)))
    end
    return L, cholesky_lower_pullback
end

# The cotangent of `A` for a symmetric-matrix cotangent `M` when only the lower triangle of `A`
# is read: a strictly lower entry stands for two positions, a diagonal entry for one.
_lower_cotangent(M) = LinearAlgebra.tril(M + M') - LinearAlgebra.Diagonal(M)

"""
    eigh_lower(A)

numpy's `linalg.eigh`: the eigenvalues (ascending) and orthonormal eigenvectors (columns) of
the symmetric matrix whose lower triangle is that of `A`, as a Tuple. LAPACK's drivers leave
each eigenvector's sign open, so it is fixed as pyzygote's NumPy engine fixes it: the first
entry of largest magnitude (to within `sqrt(eps)`) is positive. Duals go through
ForwardDiff's `eigen(::Symmetric{<:Dual})`.

It has an `rrule` for the same reason as [`cholesky_lower`](@ref): the cotangent of `A`
lies in its lower triangle.
"""
function eigh_lower(A::AbstractMatrix)
    # Densely symmetric first: ForwardDiff's `eigen(::Symmetric{<:Dual})` takes the values
    # from the upper triangle of the parent matrix, whatever the wrapper's `uplo`.
    S = Matrix(LinearAlgebra.Symmetric(A, :L))
    F = LinearAlgebra.eigen(LinearAlgebra.Symmetric(S))
    return F.values, F.vectors .* permutedims(_column_signs(F.vectors))
end

# Plain numbers (not duals), so that multiplying by them keeps the partials as they are.
function _column_signs(V::AbstractMatrix)
    T = typeof(primal(zero(eltype(V))))
    tol = 1 - sqrt(eps(T))
    return map(axes(V, 2)) do j
        col = primal.(view(V, :, j))
        big = maximum(abs, col)
        lead = col[findfirst(x -> abs(x) >= big * tol, col)]
        return lead < 0 ? -one(T) : one(T)
    end
end

function ChainRulesCore.rrule(::typeof(eigh_lower), A::AbstractMatrix{<:Real})
    w, V = eigh_lower(A)
    project_A = ProjectTo(A)
    function eigh_lower_pullback(Δ)
        Δ isa ChainRulesCore.AbstractZero && return (NoTangent(), Δ)
        Δw, ΔV = _pair(unthunk(Δ))
        # With C = Vᵀ dS V: dw = diag(C) and dV = V (F ∘ C), F[i, j] = 1 / (w[j] - w[i]).
        M = V * (_diagonal_part(Δw, w) + _rotation_part(ΔV, w, V)) * V'
        return NoTangent(), project_A(_lower_cotangent(M))
    end
    return (w, V), eigh_lower_pullback
end

# Zygote hands the pullback of a Tuple a `Tangent` whose unused entries are zeros.
_pair(Δ) = (Δ[1], Δ[2])

_diagonal_part(::ChainRulesCore.AbstractZero, w) = LinearAlgebra.Diagonal(zero(w))
_diagonal_part(Δw, _) = LinearAlgebra.Diagonal(unthunk(Δw))

_rotation_part(::ChainRulesCore.AbstractZero, _, V) = zero(V)
function _rotation_part(ΔV, w, V)
    C = V' * unthunk(ΔV)
    gaps = permutedims(w) .- w
    return map((c, g, I) -> I[1] == I[2] ? zero(c) : c / g, C, gaps, CartesianIndices(C))
end

"""
    svd_thin(A)

numpy's `linalg.svd(A, full_matrices = false)` as a Tuple `(U, s, Vt)`, with
`A ≈ U * Diagonal(s) * Vt` and `s` descending. Each pair of singular vectors is signed as
pyzygote's NumPy engine signs it: the first entry of largest magnitude (to within
`sqrt(eps)`) of each column of `U` is positive.

LAPACK takes only plain floats, so a matrix of ForwardDiff duals (`jvp`, `hessian`) is
decomposed by its values and the partials carried through the derivative of the
decomposition, as ForwardDiff's `eigen` does for symmetric matrices. The `rrule` is the
transpose of that derivative.
"""
function svd_thin(A::AbstractMatrix{<:Union{Float32, Float64}})
    m, n = size(A)
    # numpy's thin factors of an empty matrix (LinearAlgebra's are square identities)
    min(m, n) == 0 &&
        return (zeros(eltype(A), m, 0), zeros(eltype(A), 0), zeros(eltype(A), 0, n))
    F = LinearAlgebra.svd(A)
    signs = _column_signs(F.U)
    return F.U .* permutedims(signs), F.S, F.Vt .* signs
end

function svd_thin(A::AbstractMatrix{ForwardDiff.Dual{T, V, N}}) where {T, V, N}
    U, s, Vt = svd_thin(ForwardDiff.value.(A))
    parts = ntuple(j -> _svd_tangent(U, s, Vt, ForwardDiff.partials.(A, j)), N)
    carry(x, k) = ForwardDiff.Dual{T}.(x, tuple.(map(p -> p[k], parts)...))
    return carry(U, 1), carry(s, 2), carry(Vt, 3)
end

# F[i, j] = 1 / (s[j]^2 - s[i]^2) off the diagonal, 0 on it.
function _inverse_gaps(s::AbstractVector)
    gaps = permutedims(s.^2) .- s.^2
    return map((g, I) -> I[1] == I[2] ? zero(inv(g)) : inv(g), gaps, CartesianIndices(gaps))
end

# The derivative `(dU, ds, dVt)` of the thin SVD `(U, s, Vt)` along `dA`. With
# `dP = U' dA V`: `ds = diag(dP)`, and `U` and `V` rotate by `F .* (dP S + S dP')` and
# `F .* (S dP + dP' S)`; a rectangular `A` adds the part of `dA` outside their span.
function _svd_tangent(U, s, Vt, dA)
    V = Vt'
    dP = U' * dA * V
    F = _inverse_gaps(s)
    dU = U * (F .* (dP .* permutedims(s) .+ s .* dP'))
    dV = V * (F .* (s .* dP .+ dP' .* permutedims(s)))
    if size(U, 1) > length(s)
        dAV = dA * V
        dU = dU .+ (dAV .- U * (U' * dAV)) ./ permutedims(s)
    end
    if size(Vt, 2) > length(s)
        dAU = dA' * U
        dV = dV .+ (dAU .- V * (V' * dAU)) ./ permutedims(s)
    end
    return dU, LinearAlgebra.diag(dP), Matrix(dV')
end

function ChainRulesCore.rrule(::typeof(svd_thin), A::AbstractMatrix{<:Real})
    U, s, Vt = svd_thin(A)
    project_A = ProjectTo(A)
    function svd_thin_pullback(Δ)
        Δ isa ChainRulesCore.AbstractZero && return (NoTangent(), Δ)
        ΔU, Δs, ΔVt = _triple(unthunk(Δ))
        return NoTangent(), project_A(_svd_cotangent(U, s, Vt, ΔU, Δs, ΔVt))
    end
    return (U, s, Vt), svd_thin_pullback
end

_triple(Δ) = (Δ[1], Δ[2], Δ[3])

# The transpose of `_svd_tangent`: with `J = F .* (U'ΔU - ΔU'U)` and
# `K = F .* (V'ΔV - ΔV'V)`, `Ā = U (J S + Diagonal(Δs) + S K) Vt` plus, for a rectangular
# `A`, the parts of `ΔU` and `ΔV` outside the span of `U` and `V`, scaled by `1 ./ s`.
function _svd_cotangent(U, s, Vt, ΔU, Δs, ΔVt)
    F = _inverse_gaps(s)
    inner = LinearAlgebra.Diagonal(_or_zeros(Δs, s))
    Ā = zero(U) * zero(Vt)
    if !(ΔU isa ChainRulesCore.AbstractZero)
        ΔU = unthunk(ΔU)
        J = F .* (U' * ΔU .- ΔU' * U)
        inner = inner .+ J .* permutedims(s)
        if size(U, 1) > length(s)
            Ā = Ā .+ ((ΔU .- U * (U' * ΔU)) ./ permutedims(s)) * Vt
        end
    end
    if !(ΔVt isa ChainRulesCore.AbstractZero)
        ΔV = Matrix(unthunk(ΔVt)')
        V = Vt'
        K = F .* (V' * ΔV .- ΔV' * V)
        inner = inner .+ s .* K
        if size(Vt, 2) > length(s)
            Ā = Ā .+ U * ((ΔV .- V * (V' * ΔV)) ./ permutedims(s))'
        end
    end
    return Ā .+ U * inner * Vt
end

_or_zeros(::ChainRulesCore.AbstractZero, s) = zero(s)
_or_zeros(Δs, _) = unthunk(Δs)

"""
    qr_thin(A)

numpy's `linalg.qr(A)` (mode `"reduced"`) as a Tuple `(Q, R)`, with `A ≈ Q * R`: `Q` is
`m × k` with orthonormal columns and `R` is `k × n` upper triangular, `k = min(m, n)`. The
signs are LAPACK's, as numpy's: `LinearAlgebra.qr` of a float matrix calls `geqrt` and numpy
`geqrf`, both of which make each reflector with `dlarfg`, so `R[j, j] = -sign(α) * norm` for
the entry `α` of the matrix reduced so far, in both (up to rounding, where `α` is at rounding
level).

A matrix of ForwardDiff duals is factored by its values and the partials carried through the
derivative of the factorization, as for [`svd_thin`](@ref); the `rrule` is the transpose of
that derivative. Both throw an `ArgumentError` where `A` is rank deficient to working
precision (see [`qr_rank_checked`](@ref)): the factors beyond that column have no derivative.
"""
function qr_thin(A::AbstractMatrix{<:Union{Float32, Float64}})
    m, n = size(A)
    # numpy's thin factors of an empty matrix
    min(m, n) == 0 && return (zeros(eltype(A), m, 0), zeros(eltype(A), 0, n))
    F = LinearAlgebra.qr(A)
    # `Matrix` of the Q factor is the thin one, m × min(m, n)
    return Matrix(F.Q), F.R
end

function qr_thin(A::AbstractMatrix{ForwardDiff.Dual{T, V, N}}) where {T, V, N}
    Av = ForwardDiff.value.(A)
    Q, R = qr_thin(Av)
    parts = ntuple(j -> _qr_tangent(Av, Q, R, ForwardDiff.partials.(A, j)), N)
    carry(x, k) = ForwardDiff.Dual{T}.(x, tuple.(map(p -> p[k], parts)...))
    return carry(Q, 1), carry(R, 2)
end

# `B R⁻¹` and `B R⁻ᵀ` for an upper triangular `R`, by triangular solves from the left
# (LAPACK's `trtrs` for floats), which throw at a zero on the diagonal; BLAS's `trsm` behind
# `B / UpperTriangular(R)` would divide by it.
_times_inv(B, R) = permutedims(LinearAlgebra.UpperTriangular(R)' \ permutedims(B))
_times_inv_transpose(B, R) = permutedims(LinearAlgebra.UpperTriangular(R) \ permutedims(B))

"""
    qr_rank_checked(R)

`R` itself, after checking that no diagonal entry of the (tall or square) `R` is zero to
working precision: `abs(R[j, j]) <= max(size(R)...) * max(eps * norm(R[:, j]), floatmin)`,
relative to the norm of column `j` of `A` (Householder QR is columnwise backward stable, and
`A D` for a positive diagonal `D` has the factors `Q` and `R D`: columns of very different
norms are not refused). Otherwise `A = Q R` is rank deficient, its factors from column `j` on
are any orthonormal completion, and this throws an `ArgumentError` saying so (pyzygote's NumPy
engine raises `LinAlgError` with the same message). The derivatives of [`qr_thin`](@ref) pass
`R` through it before solving with `R`.
"""
function qr_rank_checked(R::AbstractMatrix)
    V = primal.(R)
    T = eltype(V)
    isempty(V) && return R
    for j in 1:minimum(size(V))
        # at least floatmin: a subnormal R[j, j] has lost precision, and its inverse overflows
        tol = maximum(size(V)) *
            max(eps(T) * LinearAlgebra.norm(view(V, :, j)), floatmin(T))
        # NaN compares false: a NaN gradient is reported as such
        if abs(V[j, j]) <= tol
            throw(ArgumentError(_qr_rank_message(j - 1, V[j, j], tol)))
        end
    end
    return R
end

# The identity's pullback: the check is on the primal only.
function ChainRulesCore.rrule(::typeof(qr_rank_checked), R::AbstractMatrix)
    return qr_rank_checked(R), Δ -> (NoTangent(), Δ)
end

# The NumPy engine's message (pyzygote/primitives/qr.py), with 0-based `j` as numpy counts.
function _qr_rank_message(j, value, tol)
    v, t = round(value; sigdigits = 3), round(tol; sigdigits = 3)
    return "np.linalg.qr has no derivative here: R[$j, $j] = $v is zero to working " *
        "precision (at most $t = max(m, n) * eps * the norm of column $j of A, or max(m, " *
        "n) * the smallest normal number), so column $j of A is a combination of the " *
        "columns before it and A is rank deficient. Q's " *
        "columns and R's rows from $j on are then any orthonormal completion, with no " *
        "derivative. " *
        "A loss that does not depend on that choice is smooth without qr: np.sum(R ** 2) " *
        "is np.sum(A ** 2), R.T @ R is A.T @ A; one that needs only Q's first columns can " *
        "take np.linalg.qr(A[:, :k])."
end

# The derivative `(dQ, dR)` of the thin QR `(Q, R)` of `A` along `dA`. For `m >= n`,
# with `M = Q' dA R⁻¹`: `Q' dQ` is antisymmetric and `dR R⁻¹` upper triangular, so
# `Q' dQ = Ω`, the strict lower triangle of `M` minus its transpose, and `dR = (M - Ω) R`;
# a tall `A` adds the part of `dA R⁻¹` outside the span of `Q`. A wide `A = [X Y]` takes
# the square case for `X = Q U`, and `R = [U Q'Y]`.
function _qr_tangent(A, Q, R, dA)
    m, n = size(A)
    min(m, n) == 0 && return zero(Q), zero(R)
    if m < n
        dQ, dU = _qr_tangent(A[:, 1:m], Q, R[:, 1:m], dA[:, 1:m])
        dV = dQ' * A[:, (m + 1):n] .+ Q' * dA[:, (m + 1):n]
        return dQ, hcat(dU, dV)
    end
    Z = _times_inv(dA, qr_rank_checked(R))
    M = Q' * Z
    L = LinearAlgebra.tril(M, -1)
    Ω = L .- L'
    dR = (M .- Ω) * R
    dQ = m > n ? Q * Ω .+ (Z .- Q * M) : Q * Ω
    return dQ, dR
end

function ChainRulesCore.rrule(::typeof(qr_thin), A::AbstractMatrix{<:Real})
    Q, R = qr_thin(A)
    project_A = ProjectTo(A)
    function qr_thin_pullback(Δ)
        Δ isa ChainRulesCore.AbstractZero && return (NoTangent(), Δ)
        ΔQ, ΔR = _pair(unthunk(Δ))
        Ā = _qr_cotangent(A, Q, R, _or_zeros(ΔQ, Q), _or_zeros(ΔR, R))
        return NoTangent(), project_A(Ā)
    end
    return (Q, R), qr_thin_pullback
end

# The transpose of `_qr_tangent`. For `m >= n`, with `M = R ΔR' - ΔQ' Q`:
# `Ā = (ΔQ + Q C) R⁻ᵀ`, `C` the symmetric matrix with the lower triangle of `M` (only the
# upper triangle of `ΔR` counts: `dR` is upper triangular). A wide `A = [X Y]` with
# `ΔR = [ΔU ΔV]`: `Ȳ = Q ΔV`, and `X̄` is the square case's with `ΔQ + Y ΔV'` for `ΔQ`.
function _qr_cotangent(A, Q, R, ΔQ, ΔR)
    m, n = size(A)
    min(m, n) == 0 && return zero(A)
    if m < n
        Y = A[:, (m + 1):n]
        ΔV = ΔR[:, (m + 1):n]
        X̄ = _qr_cotangent(A[:, 1:m], Q, R[:, 1:m], ΔQ .+ Y * ΔV', ΔR[:, 1:m])
        return hcat(X̄, Q * ΔV)
    end
    qr_rank_checked(R)
    M = R * ΔR' .- ΔQ' * Q
    C = LinearAlgebra.tril(M) .+ LinearAlgebra.tril(M, -1)'
    return _times_inv_transpose(ΔQ .+ Q * C, R)
end

"""
    pinv_of(A, rcond)

numpy's `linalg.pinv(A, rcond)`: LinearAlgebra's `pinv` with `rtol = rcond` (singular values
above `rcond` times the largest are inverted). For a matrix of constant rank its derivative
needs only `P = pinv(A)` (Golub and Pereyra):
`dP = -P dA P + P P' dA' (I - A P) + (I - P A) dA' P' P`, smooth where singular values
repeat, where the singular vectors' derivatives are not. Duals carry it as partials; the
`rrule` is its transpose.
"""
function pinv_of(A::AbstractMatrix{<:Union{Float32, Float64}}, rcond::Real)
    return LinearAlgebra.pinv(A; rtol = rcond)
end

function pinv_of(A::AbstractMatrix{ForwardDiff.Dual{T, V, N}}, rcond::Real) where {T, V, N}
    Av = ForwardDiff.value.(A)
    P = pinv_of(Av, rcond)
    left, right = LinearAlgebra.I - Av * P, LinearAlgebra.I - P * Av
    parts = ntuple(j -> _pinv_tangent(P, left, right, ForwardDiff.partials.(A, j)), N)
    return ForwardDiff.Dual{T}.(P, tuple.(parts...))
end

# With `left = I - A P` and `right = I - P A`, the same for every direction `dA`.
function _pinv_tangent(P, left, right, dA)
    return -(P * dA * P) .+ P * P' * dA' * left .+ right * dA' * P' * P
end

function ChainRulesCore.rrule(::typeof(pinv_of), A::AbstractMatrix{<:Real}, rcond::Real)
    P = pinv_of(A, rcond)
    project_A = ProjectTo(A)
    function pinv_of_pullback(ΔP)
        G = unthunk(ΔP)
        G isa ChainRulesCore.AbstractZero && return (NoTangent(), G, NoTangent())
        left = LinearAlgebra.I - A * P
        right = LinearAlgebra.I - P * A
        Ā = -(P' * G * P') .+ left * G' * P * P' .+ P' * P * G' * right
        return NoTangent(), project_A(Ā), NoTangent()
    end
    return P, pinv_of_pullback
end

"""
    logabsdet(A)

`log(abs(det(A)))` from an LU factorization, so that it neither overflows nor underflows;
numpy's `linalg.slogdet(A)` is `(detsign(A), logabsdet(A))`. A singular `A` gives `-Inf`.
"""
logabsdet(A::AbstractMatrix) = first(LinearAlgebra.logabsdet(A))

function ChainRulesCore.rrule(::typeof(logabsdet), A::AbstractMatrix{<:Real})
    F = LinearAlgebra.lu(A; check = false)
    project_A = ProjectTo(A)
    logabsdet_pullback(ȳ) = (NoTangent(), project_A(unthunk(ȳ) .* inv(F)'))
    return first(LinearAlgebra.logabsdet(F)), logabsdet_pullback
end

"""
    detsign(A)

The sign of `det(A)` (`0` for a singular `A`), computed without forming the determinant.
"""
detsign(A::AbstractMatrix) = last(LinearAlgebra.logabsdet(A))

ChainRulesCore.@non_differentiable detsign(::Any)

include("matrix_exponential.jl")

"""
    primal(x)

The plain number under any ForwardDiff duals. numpy compares values; ForwardDiff 1 also
compares the partials of duals whose values tie (`Dual(0.0, 1.0) == 0` is `false`), so a
comparison inside `jvp` or `hessian` would take another branch than the evaluation at
exactly the ties that guards such as `where(x == 0, ...)` are written for.
"""
primal(x::Real) = x
primal(x::ForwardDiff.Dual) = primal(ForwardDiff.value(x))

"""
    lt(x, y), le(x, y), gt(x, y), ge(x, y), eq(x, y), ne(x, y)

numpy's comparisons for one element, on values only (see [`primal`](@ref)); used
broadcast, as in `PyZygote.lt.(x, y)`.
"""
lt(x::Real, y::Real) = primal(x) < primal(y)
le(x::Real, y::Real) = primal(x) <= primal(y)
gt(x::Real, y::Real) = primal(x) > primal(y)
ge(x::Real, y::Real) = primal(x) >= primal(y)
eq(x::Real, y::Real) = primal(x) == primal(y)
ne(x::Real, y::Real) = primal(x) != primal(y)

"""
    convert_eltype(T, x)

numpy's `astype(T)` between floating-point types (`Float32` <-> `Float64`), for a number or
an array. Unlike `T.(x)` it also converts ForwardDiff duals (their value and partials), so
forward mode (`jvp`, `hessian`) works through mixed precision.

It has an `rrule` so that Zygote does not differentiate the conversion of duals; the
cotangent is converted back to the element type of `x`.
"""
convert_eltype(::Type{T}, x::Number) where {T <: Real} = _retype(T, x)
convert_eltype(::Type{T}, x::AbstractArray) where {T <: Real} = map(v -> _retype(T, v), x)

function ChainRulesCore.rrule(::typeof(convert_eltype), ::Type{T}, x) where {T <: Real}
    project_x = ProjectTo(x)
    function convert_eltype_pullback(ȳ)
        return NoTangent(), NoTangent(), project_x(unthunk(ȳ))
    end
    return convert_eltype(T, x), convert_eltype_pullback
end

_retype(::Type{T}, v::Real) where {T} = convert(T, v)
_retype(::Type{T}, v::ForwardDiff.Dual) where {T} = convert(_retyped(T, typeof(v)), v)

# The type of a (possibly nested) dual with innermost value type `T`.
_retyped(::Type{T}, ::Type{<:Real}) where {T} = T
function _retyped(::Type{T}, ::Type{ForwardDiff.Dual{Tag, V, N}}) where {T, Tag, V, N}
    return ForwardDiff.Dual{Tag, _retyped(T, V), N}
end

# --- ODE solves: declared here, methods in the PyZygoteODEExt extension -------------------

"""
    odesolve(f, u0, p, t, alg::Symbol, sensealg::Symbol, reltol, abstol, maxiters, tstops)

The solution of `u' = f(u, p, t)` from `u0` at the save times `t`, time-major
(`length(t) × length(u0)`), as pyzygote's `odesolve`; the solver steps to each time in
`tstops` (possibly empty). The methods are in the
`PyZygoteODEExt` extension, loaded with OrdinaryDiffEq, OrdinaryDiffEqLowOrderRK,
OrdinaryDiffEqSDIRK and SciMLSensitivity; Zygote differentiates them through
SciMLSensitivity.
"""
function odesolve end

"""
    odesolve_sensitivities(f, u0, p, t, alg, sensealg, reltol, abstol, maxiters, tstops)

`(U, S)`: the solution as [`odesolve`](@ref) gives it, and its sensitivities
`S[i, j, k] = ∂U[i, j] / ∂[u0; p][k]` (ForwardDiff through the solver). Methods in
`PyZygoteODEExt`.
"""
function odesolve_sensitivities end

"""
    sensitivity_columns(cols, f, u0, p, t, alg, sensealg, reltol, abstol, maxiters, tstops)

[`odesolve_sensitivities`](@ref) restricted to the directions `cols` of `[u0; p]` that a
program follows (those of a constant `u0` are left out): `(U, S[:, :, cols])`.
"""
function sensitivity_columns(cols::AbstractVector{<:Integer}, args...)
    U, S = odesolve_sensitivities(args...)
    return (U, S[:, :, cols])
end

"""
    odesolve_tangent(f, u0, p, du0, dp, t, alg, sensealg, reltol, abstol, maxiters, tstops)

The directional derivative of [`odesolve`](@ref) along `(du0, dp)`. Methods in
`PyZygoteODEExt`.
"""
function odesolve_tangent end

"""
    odesolve_vjp(f, u0, p, ct, t, alg, sensealg, reltol, abstol, maxiters, tstops)

`(ct ⋅ ∂U/∂u0, ct ⋅ ∂U/∂p)` for the solution `U` of [`odesolve`](@ref), by Zygote through
SciMLSensitivity's `sensealg`. Methods in `PyZygoteODEExt`.
"""
function odesolve_vjp end

"""
    odesolve_hvp(f, u0, p, ct, du0, dp, dct, t, alg, sensealg, reltol, abstol, maxiters, tstops)

The directional derivative of [`odesolve_vjp`](@ref) along `(du0, dp, dct)`, as one vector
over `[u0; p]`: `H v + Sᵀ dct`, with `H` the Hessian of `ct ⋅ U` in `[u0; p]`, `v = [du0; dp]`
and `S` the sensitivities of `U`. Methods in `PyZygoteODEExt`.
"""
function odesolve_hvp end

"""
    results(y, sizes::Tuple)

The results of a user's Julia function called from traced numpy code, as the Tuple the
generated code destructures, after checking them against the sizes pyzygote traced with
(`()` for a number).
"""
function results(y, sizes::Tuple)
    ys = map(_number_if_0d, as_tuple(y))
    ChainRulesCore.ignore_derivatives() do
        _check_results(ys, sizes)
    end
    return ys
end

as_tuple(y::Tuple) = y
as_tuple(y) = (y,)

# The array contract has no 0-d arrays: numpy's 0-d results are Julia numbers.
_number_if_0d(r::AbstractArray{<:Any, 0}) = r[]
_number_if_0d(r) = r

function _check_results(ys::Tuple, sizes::Tuple)
    if length(ys) != length(sizes)
        msg = "the Julia function returned $(length(ys)) results where pyzygote traced " *
            "$(length(sizes)) (see result_shape)"
        throw(ArgumentError(msg))
    end
    for (k, (r, sz)) in enumerate(zip(ys, sizes))
        if !(r isa Union{Real, AbstractArray{<:Real}})
            msg = "result $k of the Julia function is a $(typeof(r)); pyzygote takes real " *
                "numbers and arrays of them"
            throw(ArgumentError(msg))
        end
        if size(r) != sz
            msg = "result $k of the Julia function has size $(size(r)), but pyzygote traced " *
                "size $sz (see result_shape)"
            throw(ArgumentError(msg))
        end
    end
    return nothing
end

"""
    FirstOutput(f)

`(u, p, t) -> first(f(u, p, t))`: a generated right-hand side returns the Tuple of its
outputs; the ODE solvers want the derivative itself.
"""
struct FirstOutput{F}
    f::F
end

(g::FirstOutput)(u, p, t) = first(g.f(u, p, t))

"""
    solve_problem(f, u0, p, tspan, alg::Symbol, saveat, reltol, abstol, maxiters, tstops)

An ODE solve that is not differentiated: `(t, u, retcode, stats)` with `u` time-major. The
methods are in the `PyZygoteODEExt` extension.
"""
function solve_problem end

"""
    SolverFailure(retcode::String, t::Float64)

Thrown when an ODE solve does not succeed: `retcode` is the solver's return code and `t` the
last time it reached.
"""
struct SolverFailure <: Exception
    retcode::String
    t::Float64
end

function Base.showerror(io::IO, e::SolverFailure)
    return print(io, "SolverFailure: the ODE solve stopped at t = $(e.t): $(e.retcode)")
end

include("nonlinear_solve.jl")

# --- entry points called from Python ------------------------------------------------------

"""
    evaluate(f, args::Tuple) -> Tuple

The outputs of the generated closure `f` at `args`.
"""
evaluate(f, args::Tuple) = f(args...)

"""
    value_and_gradient(f, args::Tuple) -> (vals::Tuple, grads::Tuple)

For `f` returning a Tuple whose first element is a real scalar: all of `f`'s outputs, and
the gradient of the first with respect to each argument (Zygote, reverse mode). The other
outputs are auxiliary values, which `Zygote.withgradient` returns without differentiating
them. An argument the output does not depend on gets zeros of its own size and element type
instead of Zygote's `nothing`.
"""
function value_and_gradient(f, args::Tuple)
    res = Zygote.withgradient(f, args...)
    return res.val, map(_gradient_like, args, res.grad)
end

"""
    pullback(f, args::Tuple) -> (ys::Tuple, back)

The outputs of `f` at `args` and the vector-Jacobian product
`back(cts::Tuple) -> grads::Tuple`: `cts` holds one cotangent per output (of the output's
size), `grads` one gradient per argument, with zeros where Zygote returns `nothing`. `back`
may be called many times.
"""
function pullback(f, args::Tuple)
    ys, back = Zygote.pullback(f, args...)
    function vjp(cts::Tuple)
        grads = back(cts)
        grads === nothing && return map(zero, args)
        return map(_gradient_like, args, grads)
    end
    return ys, vjp
end

# A gradient as a dense array (or number) shaped and typed like the argument `x`. The
# projection gives `NoTangent()` for a Bool argument (ChainRulesCore treats Bool as not
# differentiable), which becomes zeros too. Integer arguments (labels) are data, as on the
# NumPy engine: zeros of their own type, where ChainRulesCore would project a Float64
# gradient (`ProjectTo(::Integer)` is `ProjectTo(float(x))`).
_gradient_like(x, dx) = _is_data(x) ? zero(x) : _gradient_of(x, dx)
_is_data(x) = x isa Integer || x isa AbstractArray{<:Integer}
_gradient_of(x, ::Nothing) = zero(x)
_gradient_of(x, ::ChainRulesCore.AbstractZero) = zero(x)
_gradient_of(x, dx) = _dense(x, ProjectTo(x)(unthunk(dx)))

_dense(x, ::ChainRulesCore.AbstractZero) = zero(x)
_dense(_, dx::Number) = dx
_dense(_, dx::Array) = dx
_dense(_, dx::AbstractArray) = collect(dx)

"""
    jvp(f, args::Tuple, tangents::Tuple) -> (ys::Tuple, ts::Tuple)

The outputs of `f` at `args` and their derivatives along `tangents` (one per argument, of
the argument's size): `ts[k]` is `d/dt f(args .+ t .* tangents)[k]` at `t = 0`, computed in
forward mode with `ForwardDiff.derivative`, one pass per output. Only floating-point
arguments move: integer and Bool arguments (indices, masks) have no tangent, as on the
NumPy engine, and stay plain numbers. The direction is taken in the floating-point type
that the floating-point arguments promote to.
"""
function jvp(f, args::Tuple, tangents::Tuple)
    length(args) == length(tangents) ||
        throw(ArgumentError("jvp needs one tangent per argument"))
    ys = f(args...)
    t0 = zero(float(mapreduce(_direction_type, promote_type, args; init = Bool)))
    along(t) = map((x, v) -> _along(x, v, t), args, tangents)
    ts = ntuple(k -> ForwardDiff.derivative(t -> f(along(t)...)[k], t0), length(ys))
    return ys, ts
end

_direction_type(x) = eltype(x) <: AbstractFloat ? eltype(x) : Bool

_along(x::Union{AbstractFloat, AbstractArray{<:AbstractFloat}}, v, t) = x .+ t .* v
_along(x, _, _) = x

# The arguments before argument number `argnum` (1-based), that argument, and those after.
function _around(args::Tuple, argnum::Int)
    1 <= argnum <= length(args) ||
        throw(ArgumentError("argnum = $argnum, but there are $(length(args)) arguments"))
    return args[1:(argnum - 1)], args[argnum], args[(argnum + 1):end]
end

"""
    jacobian(f, args::Tuple, argnum::Int) -> Matrix

Forward-mode Jacobian of the array `f(args...)[1]` with respect to argument number `argnum`
(1-based), the others held: `ForwardDiff.jacobian` carries the columns in chunks of dual
numbers, so `f` runs once per chunk rather than once per column. Rows and columns follow
the column-major linear indices of the output and of `x`, as `ForwardDiff.jacobian` has
them (a scalar `x` gives one column); the caller reshapes in column-major order.
"""
function jacobian(f, args::Tuple, argnum::Int)
    before, x, after = _around(args, argnum)
    # A number output (a 0-d numpy result) as a vector of one: `ForwardDiff.jacobian` takes
    # functions returning arrays, and `reshape` takes no number.
    output(z) = _as_array(f(before..., z, after...)[1])
    x isa Number && return reshape(ForwardDiff.derivative(output, x), :, 1)
    return ForwardDiff.jacobian(output, x)
end

_as_array(y::Number) = fill(y, 1)
_as_array(y::AbstractArray) = y

"""
    hessian(f, args::Tuple, argnum::Int) -> Array or number

Second derivatives of the real scalar `f(args...)[1]` with respect to argument number
`argnum` (1-based), forward over reverse: ForwardDiff's Jacobian of Zygote's gradient
(what `Zygote.hessian` and SciMLSensitivity's `ForwardDiffOverAdjoint` compute). For an
array argument `x` the result has size `(size(x)..., size(x)...)` and holds
`∂²f/∂x[I]∂x[J]` at `[I..., J...]`: the `length(x) × length(x)` Jacobian is indexed by
column-major linear indices, and a column-major reshape splits each of them back into the
logical index of `x`. A scalar argument gives a number.

`Zygote.hessian` itself is not used: it seeds `ForwardDiff.Dual{Nothing}` numbers, and
ForwardDiff throws a `DualMismatchError` when such a dual meets a tagged one at the same
level, as in an ODE solve whose stiff solver takes Jacobians with ForwardDiff or whose
sensitivity is `ForwardDiffSensitivity`. `ForwardDiff.jacobian` tags its duals. An
argument the output does not depend on gets a zero Hessian (Zygote's gradient is
`nothing` there).
"""
function hessian(f, args::Tuple, argnum::Int)
    before, x, after = _around(args, argnum)
    loss(z) = f(before..., z, after...)[1]
    grad(z) = _gradient_like(z, Zygote.gradient(loss, z)[1])
    x isa Number && return ForwardDiff.derivative(grad, x)
    h = ForwardDiff.jacobian(z -> vec(grad(z)), x)
    return reshape(h, (size(x)..., size(x)...))
end

"""
    to_array(x)

A dense Julia `Array` copy of `x` (for instance a PythonCall `PyArray` wrapping numpy
memory), with the same size and the same element at each logical index. Numbers are returned
as they are.
"""
to_array(x::AbstractArray) = Array(x)
to_array(x::Number) = x

end
