// Uniqueness of GRN names (the provenance node of an imported gene regulatory network).
// params: none
CREATE CONSTRAINT grn_name IF NOT EXISTS FOR (n:GRN) REQUIRE n.name IS UNIQUE
