"""Selection: novelty and error criteria, diversity, the policy and the ledger (see DESIGN.md section 6)."""
