"""Studies that join pretraining and evaluation: the variant comparison, the transfer benchmark,
the scaling curve and lead reconstruction. eval/ keeps the evaluation primitives they use."""
