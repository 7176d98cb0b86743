# Glue between pyzygote's Python runtime (pyzygote/julia/session.py) and PyZygote.
#
# Loaded once per Python process into `Main` as `Main.PyZygoteRuntime`.
#
# Array contract: a numpy array of shape (a, b, c) is a Julia `Array` of size (a, b, c)
# holding the same element at the same logical index (numpy axis k is Julia dimension
# k + 1); a numpy 0-d array is a Julia scalar.  Python passes numpy arrays, which arrive
# as zero-copy `PythonCall.PyArray` views with numpy's strides, and numpy scalars, which
# arrive as Julia numbers of the same type, except numpy 2's `np.bool` (PythonCall 0.9.34
# knows it as `numpy:bool_`), which arrives as a 0-d `PyArray{Bool}` that `jlarg` unwraps.
# `jlarg` copies every array into a dense
# `Array` before anything reaches Zygote.  Results travel back as arrays: a number `y`
# becomes the 0-dimensional `fill(y)`, so Python receives it with its element type.
# Python reads fresh results of generated programs as zero-copy numpy views (see
# pyzygote/julia/convert.py): nothing here keeps or mutates an array it returns.

module PyZygoteRuntime

import PyZygote

# --- Python -> Julia ----------------------------------------------------------------
jlarg(x::Number) = x
jlarg(x::AbstractArray{<:Any, 0}) = x[]
jlarg(x::AbstractArray) = PyZygote.to_array(x)
# Anything else (a pz.julia_function handed to generated code as an ODE right-hand
# side, a callable struct) passes through unchanged.
jlarg(x) = x
jlargs(xs::Tuple) = map(jlarg, xs)

# --- Julia -> Python ----------------------------------------------------------------
pyout(y::Number) = fill(y)
pyout(y::Array) = y
pyout(y::AbstractArray) = collect(y)
pyout(::Nothing) = nothing
pyout(ys::Tuple) = map(pyout, ys)

# A function's results as a Tuple, the form the PyZygote entry points expect.
outputs(y::Tuple) = y
outputs(y) = (y,)

# --- entry points called from Python (arguments as varargs, converted here) --------
# The closure over the program's constants, and those constants that are arrays: Python
# keeps views of them, so that it never hands out a result that shares their memory.
function build(builder, consts...)
    cs = jlargs(consts)
    return (builder(cs...), Tuple(c for c in cs if c isa Array))
end

evaluate(f, xs...) = pyout(PyZygote.evaluate(f, jlargs(xs)))

function value_and_gradient(f, xs...)
    vals, grads = PyZygote.value_and_gradient(f, jlargs(xs))
    return (pyout(vals), pyout(grads))
end

struct Backward{B}
    back::B
end

(b::Backward)(cts...) = pyout(b.back(jlargs(cts)))

function pullback(f, xs...)
    ys, back = PyZygote.pullback(f, jlargs(xs))
    return (pyout(ys), Backward(back))
end

function jvp(f, n::Integer, xs_and_ts...)
    xs = jlargs(xs_and_ts[1:n])
    ts = jlargs(xs_and_ts[(n + 1):end])
    ys, dys = PyZygote.jvp(f, xs, ts)
    return (pyout(ys), pyout(dys))
end

hessian(f, argnum::Integer, xs...) = pyout(PyZygote.hessian(f, jlargs(xs), argnum))
jacobian(f, argnum::Integer, xs...) = pyout(PyZygote.jacobian(f, jlargs(xs), argnum))

# pz.solve on the Julia engine: `program` is a generated right-hand side (it returns a
# Tuple) or a user's Julia function (it returns the derivative).
rhs_function(program, generated::Bool) = generated ? PyZygote.FirstOutput(program) : program

function solve_problem(program, generated::Bool, u0, p, t0, t1, alg, saveat, options...)
    reltol, abstol, maxiters, tstops = options
    t, u, retcode, stats = PyZygote.solve_problem(
        rhs_function(program, generated),
        jlarg(u0),
        jlarg(p),
        (Float64(t0), Float64(t1)),
        Symbol(alg),
        saveat === nothing ? nothing : jlarg(saveat),
        reltol,
        abstol,
        maxiters,
        jlarg(tstops),
    )
    counts = (stats.nf, stats.njacs, stats.nlu, stats.naccept, stats.nreject)
    return (pyout(t), pyout(u), retcode, counts)
end

# --- modules and source text ---------------------------------------------------------
"""
    newmodule(name, import_pyzygote)

A fresh module `PyZygoteRuntime.<name>` (an ordinary module: it has `include` and
`eval`), optionally with `import PyZygote` already done.
"""
function newmodule(name::AbstractString, import_pyzygote::Bool)
    sym = Symbol(name)
    body = import_pyzygote ? Expr(:block, :(import PyZygote)) : Expr(:block)
    # Evaluating a module expression returns the module: no lookup of the new global,
    # which code running in this (older) world age may not see (Julia 1.12 bindings).
    return Core.eval(@__MODULE__, Expr(:module, true, sym, body))::Module
end

include_text(
    m::Module,
    code::AbstractString,
    filename::AbstractString,
) = Base.include_string(m, String(code), String(filename))

include_file(m::Module, path::AbstractString) = Base.include(m, String(path))

getname(m::Module, name::AbstractString) = getfield(m, Symbol(name))

hasname(m::Module, name::AbstractString) = isdefined(m, Symbol(name))

function definednames(m::Module)
    keep = Symbol[]
    for s in names(m; all = true)
        str = string(s)
        if s !== nameof(m) &&
                !startswith(str, "#") &&
                s ∉ (:eval, :include) &&
                isdefined(m, s)
            push!(keep, s)
        end
    end
    return Tuple(string.(keep))
end

# --- errors and versions -------------------------------------------------------------
errtype(e) = string(nameof(typeof(e)))

errmessage(e) = sprint(showerror, e)

function errstack(bt, maxframes::Integer)
    frames = stacktrace(bt)
    lines = String[]
    for (i, fr) in enumerate(frames)
        if i > maxframes
            push!(lines, "  ... $(length(frames) - maxframes) more frames")
            break
        end
        push!(lines, " [$i] " * sprint(show, fr))
    end
    return join(lines, "\n")
end

function loaded_versions()
    out = Tuple{String, String}[("julia", string(VERSION))]
    for (id, m) in Base.loaded_modules
        v = pkgversion(m)
        v === nothing || push!(out, (id.name, string(v)))
    end
    return Tuple(sort(out))
end

end
