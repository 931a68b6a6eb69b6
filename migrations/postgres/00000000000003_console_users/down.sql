DROP TABLE executor_load_samples;
DROP TABLE console_login_failures;
DROP TABLE console_sessions;
DROP TABLE console_users;
