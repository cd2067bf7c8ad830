"""Analysis: pandas views of a store, its ledgers and loops; plots; the HTML report."""
