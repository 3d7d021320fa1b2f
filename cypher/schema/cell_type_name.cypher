// Uniqueness of CellType names.
// params: none
CREATE CONSTRAINT cell_type_name IF NOT EXISTS FOR (c:CellType) REQUIRE c.name IS UNIQUE
