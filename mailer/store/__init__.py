"""Every query mailer runs, grouped by the records they touch."""
