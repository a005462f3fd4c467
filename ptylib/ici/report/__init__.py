"""What an ICI run root tells its user: the summary, the final report, plots and the convergence study."""
