"""Who may pull and push: users, permission rules, tokens, and the authoriser.

One concern per module: `users` (the htpasswd file), `permissions` (rules
mapping users and groups to repository patterns and actions), `tokens`
(signing and verifying the registry's JWTs), `throttle` (failed logins),
`ownership` (upload sessions bound to the user who opened them) and
`authoriser` (the `IAuthoriser` the API layer calls). None of them knows of
HTTP: the API layer parses headers into credentials and renders decisions
as 401 or 403.
"""
