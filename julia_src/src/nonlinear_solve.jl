# --- nonlinear solves: pyzygote's `nlsolve` (included from PyZygote.jl) --------------------

"""
    Residual(f)

`(u, p) -> first(f(u, p, 0.0))`: a generated program of `(u, p, t)` returning the Tuple of its
outputs, as the residual `f(u, p)` of a nonlinear solve (pyzygote traces `f` as an ODE
right-hand side whose `t` it ignores).
"""
struct Residual{F}
    f::F
end

(r::Residual)(u, p) = first(r.f(u, p, 0.0))

"""
    NonlinearSolveFailure(reason::String, iteration::Int, residual::Float64, u::Vector{Float64})

Thrown when [`nlsolve`](@ref) finds no root: why, at which Newton iteration, the largest
`|f(u, p)|` reached there (`NaN` when `f` was not finite) and the point `u`.
"""
struct NonlinearSolveFailure <: Exception
    reason::String
    iteration::Int
    residual::Float64
    u::Vector{Float64}
end

function Base.showerror(io::IO, e::NonlinearSolveFailure)
    return print(
        io,
        "NonlinearSolveFailure: $(e.reason) (Newton iteration $(e.iteration), max|f| = ",
        "$(e.residual), at u = $(e.u))",
    )
end

# The stopping rules and the line search of pyzygote.primitives.nonlinear, the same numbers.
const STEP_EPS = 4.0
# max|f| within ROUNDING_F * eps * maximum(abs.(J) * abs.(u)), the rounding level of f's own
# terms, is a root where the line search finds no decrease along a step below reltol * max|u|.
const ROUNDING_F = 8.0
const HALVINGS = 30
const ARMIJO = 1.0e-4
const SINGULAR_CONDITION = 1.0e14
const ESTIMATE_MARGIN = 100.0
const LINEAR_RATIO = 0.25
const LINEAR_RATIO_MAX = 0.95
const LINEAR_SPREAD = 1.5
const LINEAR_STEPS = 3
const ROUNDING_STEPS = 1.0e3

"""
    nlsolve(f, u0::AbstractVector, p::AbstractVector, abstol::Real, reltol::Real, maxiters::Integer)

A root `u` of `f(u, p) = 0` by Newton's method from `u0`, as pyzygote's `nlsolve`: each step
solves `J du = -f` with the Jacobian `J = ∂f/∂u` from `ForwardDiff.jacobian`, then halves `du`
until `0.5 |f|²` decreases enough (Armijo). Converged at `u` when `maximum(abs, f) <= abstol`
and the Newton step computed there is small, `maximum(abs, du) <= reltol * maximum(abs, u)`;
or, whatever `|f|`, when `du` moves no entry of `u` by more than `STEP_EPS` machine epsilons of
it, or the line search finds no decrease along a `du` below `STEP_EPS` epsilons of
`maximum(abs, u)`; or when the line search finds no decrease at all while
`maximum(abs, f) <= abstol` (`|f|` at its rounding floor, as at a root at `u = 0`), or along a
`du` below `reltol * maximum(abs, u)` while `maximum(abs, f)` is within `ROUNDING_F` times the
rounding level of f's terms, `eps * maximum(abs.(J) * abs.(u))`. Throws a
[`NonlinearSolveFailure`](@ref) after `maxiters` iterations without convergence, at a singular
or non-finite Jacobian (also at the root: a root that is not isolated has no derivative), where
`f` is not finite, or where Newton converged linearly (a multiple root, without a derivative).

Derivatives follow the implicit function theorem: `∂u/∂p = -J⁻¹ ∂f/∂p` at the root. Dual
numbers in `p` (ForwardDiff: the engine's `jvp` and `hessian`) get their partials that way,
and the `rrule` gives Zygote `p̄ = -(∂f/∂p)ᵀ λ` with `Jᵀ λ = ū`. The root does not depend on
`u0`: Newton starts from its plain values, and its cotangent is zero.
"""
function nlsolve(
    f,
    u0::AbstractVector,
    p::AbstractVector,
    abstol::Real,
    reltol::Real,
    maxiters::Integer,
)
    start = Vector{Float64}(map(_innermost_value, u0))
    return _nlsolve(f, start, p, Float64(abstol), Float64(reltol), Int(maxiters))
end

_innermost_value(x::ForwardDiff.Dual) = _innermost_value(ForwardDiff.value(x))
_innermost_value(x::Real) = x

# Dual parameters: the root at their values, then its partials from J du = -(∂f/∂p) dp, one
# column per partial. Nested duals (a Hessian's) are peeled one level per call.
function _nlsolve(
    f,
    start::Vector{Float64},
    p::AbstractVector{ForwardDiff.Dual{T, V, N}},
    abstol::Float64,
    reltol::Float64,
    maxiters::Int,
) where {T, V, N}
    plain = ForwardDiff.value.(p)
    u = _nlsolve(f, start, plain, abstol, reltol, maxiters)
    J = ForwardDiff.jacobian(v -> f(v, plain), u)
    r = f(u, p)
    # `partials(T, x, k)` is zero for an entry of f that does not depend on p (a plain number).
    dfdp = [ForwardDiff.partials(T, r[i], k) for i in eachindex(r), k in 1:N]
    du = -(J \ dfdp)
    return [ForwardDiff.Dual{T}(u[i], ntuple(k -> du[i, k], Val(N))) for i in eachindex(u)]
end

function _nlsolve(
    f,
    start::Vector{Float64},
    p::AbstractVector,
    abstol::Float64,
    reltol::Float64,
    maxiters::Int,
)
    u = start
    r = f(u, p)
    all(isfinite, r) ||
        throw(NonlinearSolveFailure(
            "f is NaN or inf at the starting point u0 ($(_nonfinite_entries(r)))",
            0,
            NaN,
            u,
        ))
    # maximum(abs, du) of each Newton step computed, and whether it was taken whole
    steps = Tuple{Float64, Bool}[]
    for iteration in 1:(maxiters + 1)
        small_f = maximum(abs, r) <= abstol
        step, level = _newton_step(f, u, p, iteration, r, abstol)
        stepsize = Float64(maximum(abs, step))
        scale = Float64(maximum(abs, u))
        all(abs.(step) .<= STEP_EPS * eps(Float64) .* abs.(u)) && return u
        if small_f && stepsize <= reltol * scale
            ratio = _linear_convergence(vcat(steps, [(stepsize, true)]), scale)
            ratio === nothing || throw(_failure(_linear_words(ratio), iteration, r, u))
            return u
        end
        if iteration > maxiters
            recent = vcat(steps, [(stepsize, true)])
            ratio = small_f ? _linear_convergence(recent, scale) : nothing
            hint = ratio === nothing ?
                "" :
                "; the last full Newton steps shrank linearly, by $ratio each, as near a " *
                    "multiple root, which has no derivative"
            msg = "no convergence to max|f| <= abstol = $abstol with a Newton step " *
                "max|du| <= reltol * max|u| (reltol = $reltol; max|du| = $stepsize, " *
                "max|u| = $scale) within maxiters = $maxiters iterations$hint"
            throw(_failure(msg, maxiters, r, u))
        end
        found = _line_search(f, p, u, r, step, iteration)
        if found === nothing
            # No decrease along a step below rounding of the largest entry: |f| is at its
            # rounding floor, while an entry converging to 0 keeps the entrywise test above
            # from ever passing (its steps are as small as itself).
            stepsize <= STEP_EPS * eps(Float64) * scale && return u
            # No decrease at all along a descent direction: |f| is rounding noise, within
            # abstol (a root at u = 0, where the relative step test cannot pass).
            small_f && return u
            # No decrease along a small step, |f| at the rounding level of its own terms.
            if stepsize <= reltol * scale &&
                    _innermost_value(maximum(abs, r)) <= ROUNDING_F * eps(Float64) * level
                ratio = _linear_convergence(vcat(steps, [(stepsize, true)]), scale)
                ratio === nothing || throw(_failure(_linear_words(ratio), iteration, r, u))
                return u
            end
            msg = "the line search found no decrease of |f| along the Newton step, halved 30 " *
                "times (a local minimum of |f| that is not a root, a start u0 too far from " *
                "the root for Newton's step, or abstol below what rounding allows).  At a " *
                "local minimum of |f| there may be no root for this p: past a fold (turning " *
                "point) of the branch of roots, as for the Bratu problem u'' + lam exp(u) = 0 " *
                "past lam = 3.51, two roots meet and vanish; follow the root by continuation " *
                "in p from a value where it exists, each solve started from the last root, to " *
                "see where it ends"
            throw(_failure(msg, iteration, r, u))
        end
        u, r, whole = found
        push!(steps, (stepsize, whole))
    end
    throw(ErrorException("unreachable: the last iteration returns or throws"))
end

function _linear_words(ratio)
    return "Newton converged linearly, each full step $ratio times the one " *
        "before, where it converges quadratically to a simple root: the root " *
        "is (numerically) multiple, its Jacobian singular, and it has no " *
        "derivative in p (u**2 - p at p = 0 has the root sqrt(p), whose " *
        "derivative is infinite there)"
end

# The last ratio of successive full Newton steps where the last LINEAR_STEPS ratios all lie
# between LINEAR_RATIO and LINEAR_RATIO_MAX, within a factor LINEAR_SPREAD of each other (linear
# convergence, as to a multiple root), each step taken whole
# and above ROUNDING_STEPS machine epsilons of `scale = maximum(abs, u)`; `nothing` otherwise,
# as pyzygote.primitives.nonlinear's `linear_convergence`.
function _linear_convergence(steps::Vector{Tuple{Float64, Bool}}, scale::Float64)
    length(steps) < LINEAR_STEPS + 1 && return nothing
    window = steps[(end - LINEAR_STEPS):end]
    all(s -> s[2], window[1:(end - 1)]) || return nothing
    sizes = first.(window)
    minimum(sizes) > ROUNDING_STEPS * eps(Float64) * scale || return nothing
    ratios = sizes[2:end] ./ sizes[1:(end - 1)]
    all(q -> LINEAR_RATIO < q < LINEAR_RATIO_MAX, ratios) || return nothing
    maximum(ratios) <= LINEAR_SPREAD * minimum(ratios) || return nothing
    return ratios[end]
end

# The Newton step -J⁻¹ r for J = ∂f/∂u at `u` and the size of f's terms there,
# `maximum(abs.(J) * abs.(u))` (see ROUNDING_F), or a NonlinearSolveFailure where J is not finite
# or singular to working precision (the condition number of its scaled rows and columns above
# SINGULAR_CONDITION, or a zero pivot in its LU), as pyzygote.primitives.nonlinear's
# `_newton_step`: the singular values are computed only where the LU's estimate of that
# condition number exceeds SINGULAR_CONDITION / (ESTIMATE_MARGIN * n) (an SVD per iteration cost
# 7 of the 9 ms of an iteration at n = 300 in NumPy). A singular J where max|f| is neither
# within abstol nor at the rounding level of f's terms, f along directions J cannot change
# (`_stationary`), is a stationary point of |f| that is not a root, and the message says so.
function _newton_step(f, u, p, iteration::Int, r, abstol::Float64)
    J = ForwardDiff.jacobian(v -> f(v, p), u)
    level = Float64(_innermost_value(maximum(abs.(J) * abs.(u))))
    size_f = Float64(_innermost_value(maximum(abs, r)))
    at_root = size_f <= abstol || size_f <= ROUNDING_F * eps(Float64) * level
    place = at_root ? " at the root" : ""
    all(isfinite, J) ||
        throw(_failure("the Jacobian df/du is NaN or inf$place", iteration, r, u))
    step, estimate = _scaled_step(J, r)
    if step !== nothing && estimate <= SINGULAR_CONDITION / (ESTIMATE_MARGIN * length(u))
        return step, level
    end
    condition = _scaled_condition(J)
    if step === nothing || !(condition <= SINGULAR_CONDITION)
        why = at_root ?
            "the root is not isolated, and has no derivative in p" :
            "the root is not isolated there, or f does not depend on some entry of u"
        if !at_root && _stationary(J, r)
            why = "f has a stationary point here, where max|f| = $size_f is not small: a " *
                "minimum of |f| (or a saddle) that is not a root, f lying along directions " *
                "df/du cannot change.  There may be no root for this p: past a fold " *
                "(turning point) of the branch of roots, two roots meet and vanish, as those " *
                "of u**2 - p do for p < 0.  Start elsewhere (u0), or follow the root by " *
                "continuation in p from a value where it exists, each solve started from " *
                "the last root"
        end
        pivot = condition <= SINGULAR_CONDITION ?
            "; its LU factorization met a zero pivot" :
            ""
        msg = "the Jacobian df/du is singular$place (condition number " *
            "$condition with its rows and columns scaled$pivot): $why"
        throw(_failure(msg, iteration, r, u))
    end
    return step, level
end

# f lies along directions J cannot change where at least this fraction of its norm (rows and
# columns of J scaled, f by the same rows) is in J's left null space, as
# pyzygote.primitives.nonlinear's STATIONARY.
const STATIONARY = 0.9

# Whether `r = f(u)` lies (its fraction STATIONARY) in the left null space of a singular J, rows
# and columns scaled (zero ones left as they are), as pyzygote.primitives.nonlinear's
# `stationary`: u is then near a stationary point of |f|.
function _stationary(J::AbstractMatrix, r)
    Jv = Float64.(_innermost_value.(J))
    rows = vec(maximum(abs, Jv; dims = 2))
    rows[rows .== 0] .= 1.0
    S = Jv ./ rows
    cols = vec(maximum(abs, S; dims = 1))
    cols[cols .== 0] .= 1.0
    b = Float64.(_innermost_value.(r)) ./ rows
    bnorm = LinearAlgebra.norm(b)
    bnorm > 0 || return false
    F = LinearAlgebra.svd(S ./ permutedims(cols))
    n = length(b)
    null = F.S[1] > 0 ?
        F.U[:, F.S .<= F.S[1] / SINGULAR_CONDITION] :
        Matrix{Float64}(LinearAlgebra.I, n, n)
    return LinearAlgebra.norm(permutedims(null) * b) >= STATIONARY * bnorm
end

# `(rows, cols, S)`: `S = J ./ rows ./ permutedims(cols)`, J with its rows, then its columns,
# scaled to a largest magnitude of 1; `nothing` where a row or a column of J is zero.
function _scaled(J::AbstractMatrix)
    rows = vec(maximum(abs, J; dims = 2))
    all(>(0), rows) || return nothing
    S = J ./ rows
    cols = vec(maximum(abs, S; dims = 1))
    all(>(0), cols) || return nothing
    return rows, cols, S ./ permutedims(cols)
end

# The condition number of `J` with its rows, then its columns, scaled to a largest magnitude
# of 1 (Inf where a row or a column is zero), as pyzygote.primitives.nonlinear's
# `scaled_condition`: equations and unknowns in different units scale them, which changes
# `cond(J)` but neither whether `J` is singular nor the accuracy of the LU solve.
function _scaled_condition(J::AbstractMatrix)
    scaled = _scaled(J)
    scaled === nothing && return Inf
    s = LinearAlgebra.svdvals(scaled[3])
    return iszero(minimum(s)) ? Inf : Float64(maximum(s) / minimum(s))
end

# The Newton step -J⁻¹ r and an estimate of the scaled condition number no larger than its
# 1-norm one, from one LU of the scaled S (`J x = b` is `S (cols .* x) = b ./ rows`): the larger
# of LAPACK's (gecon) and `opnorm(S, 1) * |y|₁ / |b ./ rows|₁` for the step's own y, Inf where y
# is not finite; `(nothing, Inf)` where a row or column of J is zero or the LU meets a zero pivot.
function _scaled_step(J::AbstractMatrix, r)
    scaled = _scaled(J)
    scaled === nothing && return nothing, Inf
    rows, cols, S = scaled
    F = LinearAlgebra.lu(S; check = false)
    LinearAlgebra.issuccess(F) || return nothing, Inf
    anorm = LinearAlgebra.opnorm(S, 1)
    estimate = _lu_condition_estimate(F, anorm)
    b = -r ./ rows
    y = F \ b
    bnorm = sum(abs, b)
    # An estimate already Inf stays so (a Float64, also for an LU of other element types).
    if !all(isfinite, y)
        estimate = Inf
    elseif bnorm > 0 && isfinite(estimate)
        estimate = max(estimate, Float64(anorm * sum(abs, y) / bnorm))
    end
    return y ./ cols, isnan(estimate) ? Inf : estimate
end

# 1 / LAPACK's estimate of the reciprocal 1-norm condition number from an LU of floats; other
# element types get none (Inf: the singular values decide), and so does an estimate LAPACK
# reports as NaN, Inf or 0 (`info = 1` since LAPACK 3.12, a LAPACKException here).
function _lu_condition_estimate(F::LinearAlgebra.LU{<:LinearAlgebra.BlasReal}, anorm::Real)
    rcond = try
        LinearAlgebra.LAPACK.gecon!('1', F.factors, anorm)
    catch err
        err isa LinearAlgebra.LAPACKException || rethrow()
        return Inf
    end
    return rcond > 0 && isfinite(rcond) ? Float64(inv(rcond)) : Inf
end
_lu_condition_estimate(F, anorm) = Inf

# The point along `step` from `u`, f there and whether it is the whole step, where 0.5 |f|²
# has decreased enough, or `nothing` where it has not (a NonlinearSolveFailure where f was not
# finite all along). A trial point where f throws a solve failure (an ODE solve or an nlsolve
# inside f failing there: a shooting method's full step to a start whose solution blows up) is
# one where f is not finite: the step is halved, as pyzygote.primitives.nonlinear's does.
function _line_search(f, p, u, r, step, iteration::Int)
    merit = sum(abs2, r) / 2
    t = 1.0
    finite = false
    failed = nothing
    for _ in 0:HALVINGS
        trial = u .+ t .* step
        r_trial = _residual_or_failure(f, trial, p)
        if r_trial isa Exception
            failed, finite = r_trial, false
        else
            failed, finite = nothing, all(isfinite, r_trial)
            if finite && sum(abs2, r_trial) / 2 <= (1 - 2 * ARMIJO * t) * merit
                return trial, r_trial, t == 1
            end
        end
        t /= 2
    end
    if failed !== nothing
        msg = "f raised a solve failure along the whole Newton step, down to 2^-30 of it " *
            "(the last: $(sprint(showerror, failed)))"
        throw(_failure(msg, iteration, r, u))
    end
    if !finite
        step_size = round(maximum(abs, step); sigdigits = 3)
        u_scale = round(maximum(abs, u); sigdigits = 3)
        r_full = _residual_or_failure(f, u .+ step, p)
        at_full = r_full isa Exception ?
            "" :
            " ($(_nonfinite_entries(r_full)) at the full step)"
        msg = "f is NaN or inf along the whole Newton step (max|du| = $step_size, against max|u| = " *
            "$u_scale), down to 2^-30 of it$at_full. Start closer to the root (u0), or rescale the " *
            "unknowns or equations so that f stays finite along Newton's steps (unknowns " *
            "spanning many orders of magnitude in logs)"
        throw(_failure(msg, iteration, r, u))
    end
    return nothing
end

# The entries of `r` that are not finite, as pyzygote.primitives.nonlinear names them (0-based,
# as f[1] in Python), the first six.
function _nonfinite_entries(r)
    bad = findall(x -> !isfinite(x), r)
    named = join(["f[$(i - 1)] = $(r[i])" for i in first(bad, 6)], ", ")
    return length(bad) > 6 ? "$named and $(length(bad) - 6) more" : named
end

# `f(u, p)`, or the SolverFailure (an ODE solve inside f) or NonlinearSolveFailure (an nlsolve
# inside f) it threw; other exceptions propagate.
function _residual_or_failure(f, u, p)
    try
        return f(u, p)
    catch err
        err isa Union{SolverFailure, NonlinearSolveFailure} && return err
        rethrow()
    end
end

function _failure(reason::String, iteration::Int, r, u)
    return NonlinearSolveFailure(reason, iteration, maximum(abs, r), Vector{Float64}(u))
end

function ChainRulesCore.rrule(
    ::typeof(nlsolve),
    f,
    u0::AbstractVector,
    p::AbstractVector,
    abstol::Real,
    reltol::Real,
    maxiters::Integer,
)
    u = nlsolve(f, u0, p, abstol, reltol, maxiters)
    function nlsolve_pullback(ū)
        ū = unthunk(ū)
        zero_u0 = ChainRulesCore.ZeroTangent()
        if ū isa ChainRulesCore.AbstractZero
            return NoTangent(),
                NoTangent(),
                zero_u0,
                ChainRulesCore.ZeroTangent(),
                NoTangent(),
                NoTangent(),
                NoTangent()
        end
        # Jᵀ λ = ū, then p̄ = -(∂f/∂p)ᵀ λ: one vector-Jacobian product of f in p.
        J = ForwardDiff.jacobian(v -> f(v, p), u)
        λ = permutedims(J) \ collect(ū)
        _, back = Zygote.pullback(q -> f(u, q), p)
        grads = back(λ) # `nothing` when f does not depend on p at all
        dp = grads === nothing ? nothing : first(grads)
        p̄ = dp === nothing ? ChainRulesCore.ZeroTangent() : -dp
        return NoTangent(), NoTangent(), zero_u0, p̄, NoTangent(), NoTangent(), NoTangent()
    end
    return u, nlsolve_pullback
end
