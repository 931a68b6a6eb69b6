DROP TABLE settings;
DROP TABLE api_tokens;
DROP TABLE calendars;
DROP TABLE nodes;
DROP TABLE executors;
DROP TABLE fires;
DROP TABLE triggers;
DROP TABLE jobs;
