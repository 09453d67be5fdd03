"""Analysis of finished runs: the papers' theory computed for a run directory."""
