// Uniqueness of Gene symbols (the gene's key).
// params: none
CREATE CONSTRAINT gene_symbol IF NOT EXISTS FOR (n:Gene) REQUIRE n.symbol IS UNIQUE
