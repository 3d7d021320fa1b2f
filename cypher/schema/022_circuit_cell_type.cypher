// Index: circuits are looked up by cell type.
// params: none
CREATE INDEX circuit_cell_type IF NOT EXISTS FOR (n:Circuit) ON (n.cell_type)
