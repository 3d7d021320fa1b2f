// Uniqueness of CellType names (the cell type's key).
// params: none
CREATE CONSTRAINT cell_type_name IF NOT EXISTS FOR (n:CellType) REQUIRE n.name IS UNIQUE
