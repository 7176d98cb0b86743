"""The Julia engine: IR compiled to Julia and differentiated by Zygote.jl."""
