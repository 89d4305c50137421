"""The domain: repositories, their versions and staging, as SQL of one transaction.

Every module but the three `*_operations` ones holds functions of one
transaction (`txn`, an `ITransaction`) that know nothing of HTTP or of which
database serves them. The push path, in order:

- `upload_operations`: an upload session takes a blob's bytes, verifies
  them and stages the blob;
- `staging`: what a push has uploaded that no tag reaches yet;
- `promotion`: a tag write checks the manifest's closure and makes it a
  new version (`walk_manifests` is the one walk of a closure);
- `content`: the rows that say which version holds what;
- `repositories`: which repository a push to a name writes to.

Around it: `lookups` (blob and manifest reads of a pull), `listings` (tags,
catalog, referrers), `removal` (deletes of the registry API), `history`
(reading versions: summaries, content, diff), `rewrite` (rollback, modify),
`folding` (deleting versions, by hand and by retention), `distributions`,
`uploads` (upload session rows), and the housekeeping: `gc`, `expiry`,
`scrub`. `registry_operations` and `management_operations` are what the two
HTTP APIs call: they validate input and run the domain in transactions.
"""
