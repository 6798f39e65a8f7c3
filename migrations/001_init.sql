CREATE TABLE IF NOT EXISTS journeyd_placeholder(x int);
