"""
ODE solving for PyZygote: loaded when OrdinaryDiffEq, its LowOrderRK and SDIRK solver
packages and SciMLSensitivity are loaded, so the engine pays their load time only when a
program contains an ODE solve.
"""
module PyZygoteODEExt

using ChainRulesCore: ChainRulesCore
using OrdinaryDiffEq:
    OrdinaryDiffEq,
    ODEProblem,
    solve,
    Tsit5,
    AutoTsit5,
    Rosenbrock23,
    Vern7,
    Vern9,
    Rodas5P,
    FBDF
using OrdinaryDiffEqLowOrderRK: DP5
using OrdinaryDiffEqSDIRK: KenCarp4
using SciMLSensitivity: ForwardDiffSensitivity, GaussAdjoint, BacksolveAdjoint, ZygoteVJP
using PyZygote: PyZygote

const SciMLBase = OrdinaryDiffEq.SciMLBase

"""
    algorithm(name::Symbol)

The DifferentialEquations.jl solver pyzygote calls `name`: one of pyzygote's solver table,
else a solver of that name, with its default options, from a loaded solver package.
"""
function algorithm(name::Symbol)
    name === :Tsit5 && return Tsit5()
    name === :DP5 && return DP5()
    name === :Vern7 && return Vern7()
    name === :Vern9 && return Vern9()
    name === :Rodas5P && return Rodas5P()
    name === :KenCarp4 && return KenCarp4()
    name === :FBDF && return FBDF()
    name === :auto && return AutoTsit5(Rosenbrock23())
    return solver_by_name(name)
end

ChainRulesCore.@non_differentiable algorithm(name::Symbol)

# Packages whose exported solvers pyzygote finds by name: the OrdinaryDiffEq solver packages
# (OrdinaryDiffEqSDIRK's TRBDF2, OrdinaryDiffEqRosenbrock's Rodas4, ...), Sundials and
# DifferentialEquations when they are loaded.
const SOLVER_PACKAGES = ("OrdinaryDiffEq", "Sundials", "DifferentialEquations")

function solver_by_name(name::Symbol)
    for (id, m) in Base.loaded_modules
        any(prefix -> startswith(id.name, prefix), SOLVER_PACKAGES) || continue
        name in names(m) || continue
        make = getfield(m, name)
        applicable(make) || continue
        alg = make()
        alg isa SciMLBase.AbstractODEAlgorithm && return alg
    end
    msg = "no loaded solver package exports an ODE solver $(name)() that needs no arguments;" *
        " `pyzygote setup-julia --full` adds Sundials (CVODE_BDF, ...)"
    throw(ArgumentError(msg))
end

"""
    sensitivity_algorithm(name::Symbol, u0, p)

The SciMLSensitivity algorithm for pyzygote's `sensealg` name; `nothing` lets
SciMLSensitivity choose (forward mode when `length(u0) + length(p) <= 100`, else an adjoint).

Where `u0` or `p` are ForwardDiff duals (an outer forward pass, as in `PyZygote.hessian`),
`:forward` is the adjoint: ForwardDiffSensitivity's pullback keeps only the values of its
products with the cotangent (`ForwardDiff.value.(J'v)` in SciMLSensitivity 7.112's
`concrete_solve.jl`), which drops the outer derivatives. SciMLSensitivity's own choice avoids
it for duals in the same way.
"""
function sensitivity_algorithm(name::Symbol, u0, p)
    name === :auto && return nothing
    if name === :forward
        duals = eltype(u0) <: PyZygote.ForwardDiff.Dual ||
            eltype(p) <: PyZygote.ForwardDiff.Dual
        return duals ? GaussAdjoint(; autojacvec = ZygoteVJP()) : ForwardDiffSensitivity()
    end
    name === :adjoint && return GaussAdjoint(; autojacvec = ZygoteVJP())
    name === :backsolve && return BacksolveAdjoint(; autojacvec = ZygoteVJP())
    throw(ArgumentError("unknown sensealg $(name)"))
end

ChainRulesCore.@non_differentiable sensitivity_algorithm(::Any, ::Any, ::Any)

# A failed solve must never reach Python as a result: SciMLSensitivity does not check
# retcodes, and its adjoints extrapolate past the failure point.
function check_success(sol, nsaved::Integer, prob, alg, options::NamedTuple)
    if !SciMLBase.successful_retcode(sol) || length(sol.t) != nsaved
        t = time_reached(prob, alg, options)
        throw(PyZygote.SolverFailure(string(sol.retcode), t))
    end
    # A saved value interpolated between steps can be NaN while every step stayed finite: the
    # lazy interpolants of Vern7 and Vern9 evaluate the right-hand side again (user testing
    # found this with SciPy's DOP853, a Hill term of a state a hair below 0). Not a success.
    bad = findfirst(u -> !all(isfinite, u), sol.u)
    if bad !== nothing
        retcode = "Unstable (NaN or Inf in the solution saved there, with retcode $(sol.retcode))"
        throw(PyZygote.SolverFailure(retcode, Float64(PyZygote.primal(sol.t[bad]))))
    end
    return nothing
end

# Where a failed solve stopped. The solution does not say it reliably: with `saveat` it
# ends at the last save time before the failure (or, when the end of the time span is a save
# time, at the failure), and an adjoint's forward solution is interpolated to every save
# time. Integrating once more without saving leaves the integrator at that time.
function time_reached(prob, alg, options::NamedTuple)
    integrator = OrdinaryDiffEq.init(prob, alg; options..., save_everystep = false)
    OrdinaryDiffEq.solve!(integrator)
    return Float64(integrator.t)
end

# SciMLSensitivity's ZygoteVJP throws `ZygoteVJPNothingError` where Zygote's derivative of
# the right-hand side in `u` or in the parameters is `nothing`: where it does not read them
# (u' = p[1] * cos(t)), or reads `u` only through a comparison (np.where(u < 1, p[1], p[2])).
# Its `allow_nothing = true` would leave the adjoint's buffers unwritten, so instead the
# right-hand side hands `u` and the parameters on with zero cotangents (`read_also`).
# SciMLSensitivity also needs a parameter: ForwardDiffSensitivity divides by their number
# (its chunk size). A problem without parameters gets one, unused, while the right-hand side
# keeps the empty parameters it was written for.
struct WrappedRHS{F, P}
    f::F
    p::P # `nothing`: the solver's parameters are the right-hand side's own
end

(g::WrappedRHS{F, Nothing})(u, q, t) where {F} = read_also(g.f(u, q, t), u, q)
(g::WrappedRHS)(u, q, t) = read_also(g.f(u, g.p, t), u, q)

"""
    read_also(y, u, q)

`y` itself; its pullback gives `u` and `q` zero cotangents rather than `nothing`.
"""
read_also(y, u, q) = y

function ChainRulesCore.rrule(::typeof(read_also), y, u, q)
    read_also_pullback(ȳ) = (ChainRulesCore.NoTangent(), ȳ, zero(u), zero(q))
    return y, read_also_pullback
end

function with_parameter(f, p::AbstractVector)
    return isempty(p) ?
        (WrappedRHS(f, p), zeros(eltype(p), 1)) :
        (WrappedRHS(f, nothing), p)
end

function PyZygote.odesolve(
    f,
    u0::AbstractVector,
    p::AbstractVector,
    t::AbstractVector,
    alg::Symbol,
    sensealg::Symbol,
    reltol::Real,
    abstol::Real,
    maxiters::Integer,
    tstops::AbstractVector,
)
    g, q = with_parameter(f, p)
    solver = algorithm(alg)
    # Out-of-place: the generated right-hand sides return new arrays. `tstops` is given to the
    # problem as well as to `solve`, so that every solve SciMLSensitivity makes from
    # `sol.prob` steps to those times too.
    prob = ODEProblem{false}(g, u0, (first(t), last(t)), q; tstops = tstops)
    sol = solve(
        prob,
        solver;
        u0 = u0,
        p = q,
        saveat = t,
        reltol = reltol,
        abstol = abstol,
        maxiters = maxiters,
        tstops = tstops,
        sensealg = sensitivity_algorithm(sensealg, u0, q),
    )
    ChainRulesCore.ignore_derivatives() do
        check_success(sol, length(t), prob, solver, (; reltol, abstol, maxiters, tstops))
    end
    # Array(sol) is (state, time); pyzygote's contract is time-major.
    return permutedims(Array(sol))
end

# The solution as a function of `z = [u0; p]`, as a vector: `vec` is column-major, so entry
# `i + (j - 1) * length(t)` is `U[i, j]`.
# `settings` are odesolve's arguments after `t`:
# `(alg, sensealg, reltol, abstol, maxiters, tstops)`.
function flat_solution(f, n, t, settings::Tuple)
    return z -> vec(PyZygote.odesolve(f, z[1:n], z[(n + 1):end], t, settings...))
end

# The derivative of `solution` at `z` along `v`, by ForwardDiff through the solver.
function along(solution, z, v)
    return PyZygote.ForwardDiff.derivative(h -> solution(z .+ h .* v), zero(eltype(z)))
end

# `∇z (c ⋅ along(solution, z, v))`: the second-order term in the rules below, forward over
# forward. Explicit arguments throughout: Zygote's rules for ForwardDiff calls drop whatever
# the differentiated function closes over (Zygote's src/lib/forward.jl).
function curvature(solution, z, c, v)
    return PyZygote.ForwardDiff.gradient(w -> PyZygote.dot(c, along(solution, w, v)), z)
end

# `Jᵀ c` for the Jacobian `J` of `solution` at `z`.
function transposed(solution, z, c)
    return PyZygote.ForwardDiff.gradient(w -> PyZygote.dot(c, solution(w)), z)
end

# A cotangent that Zygote may give as a zero, as a dense array like `x`.
function dense_like(x, dx)
    dx isa ChainRulesCore.AbstractZero && return zero(x)
    dx === nothing && return zero(x)
    return ChainRulesCore.unthunk(dx)
end

# The derivative-only IR primitives (odesolve_sens, odesolve_tangent, odesolve_vjp) appear in
# the NumPy engine's derivative programs, and on the Julia engine in programs that call a
# transformation of an ODE loss (a `pz.jvp` or `pz.grad` inside the traced function). Their
# rules below differentiate them with ForwardDiff, so Zygote never differentiates an adjoint.
function PyZygote.odesolve_sensitivities(
    f,
    u0,
    p,
    t,
    alg,
    sensealg,
    reltol,
    abstol,
    maxiters,
    tstops,
)
    n = length(u0)
    settings = (alg, sensealg, reltol, abstol, maxiters, tstops)
    solution = flat_solution(f, n, t, settings)
    z = vcat(u0, p)
    U = PyZygote.odesolve(f, u0, p, t, settings...)
    # Row i + (j - 1) * length(t) of the Jacobian belongs to U[i, j].
    J = PyZygote.ForwardDiff.jacobian(solution, z)
    return (U, reshape(J, length(t), n, length(z)))
end

function ChainRulesCore.rrule(
    ::typeof(PyZygote.odesolve_sensitivities),
    f,
    u0,
    p,
    t,
    alg,
    sensealg,
    reltol,
    abstol,
    maxiters,
    tstops,
)
    n = length(u0)
    settings = (alg, sensealg, reltol, abstol, maxiters, tstops)
    solution = flat_solution(f, n, t, settings)
    z = vcat(u0, p)
    U = PyZygote.odesolve(f, u0, p, t, settings...)
    S = reshape(PyZygote.ForwardDiff.jacobian(solution, z), length(t), n, length(z))
    function odesolve_sensitivities_pullback(Δ)
        Δ = ChainRulesCore.unthunk(Δ)
        gz = transposed(solution, z, vec(dense_like(U, Δ[1])))
        # Skipped only for a structural zero: `iszero` of ForwardDiff 0.10 duals reads values
        # alone, and a Hessian's cotangent can be zero in value with nonzero partials.
        if !(Δ[2] === nothing || Δ[2] isa ChainRulesCore.AbstractZero)
            ΔS = dense_like(S, Δ[2])
            # ∇z ⟨ΔS, J(z)⟩, forward over forward
            C = reshape(ΔS, size(S, 1) * size(S, 2), size(S, 3))
            jacobian(w) = PyZygote.ForwardDiff.jacobian(solution, w)
            gz += PyZygote.ForwardDiff.gradient(w -> PyZygote.dot(C, jacobian(w)), z)
        end
        no = ChainRulesCore.NoTangent()
        return (no, no, gz[1:n], gz[(n + 1):end], ntuple(_ -> no, 7)...)
    end
    return (U, S), odesolve_sensitivities_pullback
end

function PyZygote.odesolve_tangent(
    f,
    u0,
    p,
    du0,
    dp,
    t,
    alg,
    sensealg,
    reltol,
    abstol,
    maxiters,
    tstops,
)
    settings = (alg, sensealg, reltol, abstol, maxiters, tstops)
    solution = flat_solution(f, length(u0), t, settings)
    return reshape(along(solution, vcat(u0, p), vcat(du0, dp)), length(t), length(u0))
end

function ChainRulesCore.rrule(
    ::typeof(PyZygote.odesolve_tangent),
    f,
    u0,
    p,
    du0,
    dp,
    t,
    alg,
    sensealg,
    reltol,
    abstol,
    maxiters,
    tstops,
)
    n = length(u0)
    settings = (alg, sensealg, reltol, abstol, maxiters, tstops)
    solution = flat_solution(f, n, t, settings)
    z, dz = vcat(u0, p), vcat(du0, dp)
    y = reshape(along(solution, z, dz), length(t), n)
    function odesolve_tangent_pullback(ȳ)
        c = vec(dense_like(y, ȳ))
        gz = curvature(solution, z, c, dz)
        gdz = transposed(solution, z, c)
        no = ChainRulesCore.NoTangent()
        grads = (gz[1:n], gz[(n + 1):end], gdz[1:n], gdz[(n + 1):end])
        return (no, no, grads..., ntuple(_ -> no, 7)...)
    end
    return y, odesolve_tangent_pullback
end

function PyZygote.odesolve_vjp(f, u0, p, ct, t, settings...)
    solution(a, b) = PyZygote.odesolve(f, a, b, t, settings...)
    _, back = PyZygote.Zygote.pullback(solution, u0, p)
    du0, dp = back(ct)
    return (something(du0, zero(u0)), something(dp, zero(p)))
end

function ChainRulesCore.rrule(
    ::typeof(PyZygote.odesolve_vjp),
    f,
    u0,
    p,
    ct,
    t,
    alg,
    sensealg,
    reltol,
    abstol,
    maxiters,
    tstops,
)
    n = length(u0)
    settings = (alg, sensealg, reltol, abstol, maxiters, tstops)
    solution = flat_solution(f, n, t, settings)
    z, c = vcat(u0, p), vec(ct)
    g = transposed(solution, z, c)
    function odesolve_vjp_pullback(Δ)
        Δ = ChainRulesCore.unthunk(Δ)
        v = vcat(dense_like(u0, Δ[1]), dense_like(p, Δ[2]))
        gz = curvature(solution, z, c, v)
        gct = reshape(along(solution, z, v), size(ct))
        no = ChainRulesCore.NoTangent()
        return (no, no, gz[1:n], gz[(n + 1):end], gct, ntuple(_ -> no, 7)...)
    end
    return (g[1:n], g[(n + 1):end]), odesolve_vjp_pullback
end

# `∂²/∂s∂r solution(z + s v + r w)` at 0: the second derivative of `solution` along `v` and `w`.
function second(solution, z, v, w)
    return along(y -> along(solution, y, v), z, w)
end

# `∇z (c ⋅ second(solution, z, v, w))`: the third-order term of `odesolve_hvp`'s rule.
function third(solution, z, c, v, w)
    return PyZygote.ForwardDiff.gradient(y -> PyZygote.dot(c, second(solution, y, v, w)), z)
end

function PyZygote.odesolve_hvp(f, u0, p, ct, du0, dp, dct, t, settings...)
    solution = flat_solution(f, length(u0), t, settings)
    z = vcat(u0, p)
    return curvature(solution, z, vec(ct), vcat(du0, dp)) .+
        transposed(solution, z, vec(dct))
end

function ChainRulesCore.rrule(
    ::typeof(PyZygote.odesolve_hvp),
    f,
    u0,
    p,
    ct,
    du0,
    dp,
    dct,
    t,
    alg,
    sensealg,
    reltol,
    abstol,
    maxiters,
    tstops,
)
    n = length(u0)
    settings = (alg, sensealg, reltol, abstol, maxiters, tstops)
    solution = flat_solution(f, n, t, settings)
    z, c, v, dc = vcat(u0, p), vec(ct), vcat(du0, dp), vec(dct)
    y = curvature(solution, z, c, v) .+ transposed(solution, z, dc)
    function odesolve_hvp_pullback(ȳ)
        w = dense_like(y, ȳ)
        # y is linear in (v, dc) and in c; H is symmetric, so v's cotangent is H w.
        gv = curvature(solution, z, c, w)
        gc = reshape(second(solution, z, v, w), size(ct))
        gdc = reshape(along(solution, z, w), size(dct))
        gz = third(solution, z, c, v, w) .+ curvature(solution, z, dc, w)
        no = ChainRulesCore.NoTangent()
        grads = (gz[1:n], gz[(n + 1):end], gc, gv[1:n], gv[(n + 1):end], gdc)
        return (no, no, grads..., ntuple(_ -> no, 7)...)
    end
    return y, odesolve_hvp_pullback
end

function PyZygote.solve_problem(
    f,
    u0::AbstractVector,
    p::AbstractVector,
    tspan::Tuple{Float64, Float64},
    alg::Symbol,
    saveat,
    reltol::Real,
    abstol::Real,
    maxiters::Integer,
    tstops::AbstractVector,
)
    prob = ODEProblem{false}(f, u0, tspan, p)
    options = (; reltol, abstol, maxiters, tstops)
    sol = if saveat === nothing
        solve(prob, algorithm(alg); options...)
    else
        solve(prob, algorithm(alg); saveat = saveat, options...)
    end
    s = sol.stats
    stats = (
        nf = s.nf,
        njacs = s.njacs,
        nlu = s.nw,
        naccept = s.naccept,
        nreject = s.nreject,
    )
    # A solve that failed before its first save time saved nothing: Array(sol) would throw.
    t = collect(sol.t)
    u = isempty(sol.u) ? zeros(eltype(u0), 0, length(u0)) : permutedims(Array(sol))
    if saveat !== nothing
        # A failed solve also saves the time it stopped at (`postamble!` matches the solution's
        # end to the integrator), which is not a save time: report the save times reached.
        # A set, as `in` on a vector searches it linearly (minutes for 10^6 save times); adding
        # zero makes -0.0 and 0.0 one key, as they are equal under `==`.
        wanted = Set(s + zero(s) for s in saveat)
        keep = [s + zero(s) in wanted for s in t]
        t, u = t[keep], u[keep, :]
    end
    # As in `check_success`: a saved value that is not finite ends the solution there, Unstable
    # (the NumPy engine stops at it too).
    retcode = string(sol.retcode)
    bad = findfirst(i -> !all(isfinite, view(u, i, :)), 1:size(u, 1))
    if bad !== nothing && SciMLBase.successful_retcode(sol)
        t, u, retcode = t[1:(bad - 1)], u[1:(bad - 1), :], "Unstable"
    end
    return (t, u, retcode, stats)
end

end # module
