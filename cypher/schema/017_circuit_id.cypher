// Uniqueness of Circuit ids (<model hash12>|<transcoder hash12>|<dataset>|<cell type>|<method>).
// params: none
CREATE CONSTRAINT circuit_id IF NOT EXISTS FOR (n:Circuit) REQUIRE n.id IS UNIQUE
