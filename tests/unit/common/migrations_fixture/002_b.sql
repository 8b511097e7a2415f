-- Fixture for test_wy_pg: several statements in one file, one transaction.
ALTER TABLE widgets ADD COLUMN color text;
INSERT INTO widgets (id, name, color) VALUES (1, 'one', 'red');
