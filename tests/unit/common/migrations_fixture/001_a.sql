-- Fixture for test_wy_pg: runs with search_path set to the test schema.
CREATE TABLE widgets (
    id bigint PRIMARY KEY,
    name text NOT NULL
);
