"""Program transformations: evaluation, JVP, linearize-then-transpose VJP, CSE, scalar unrolling."""
