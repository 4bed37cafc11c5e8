-- wrk script for `make bench`, the sidecar's Txn-Token case (SPEC §14):
-- cycles through the Txn-Tokens in $TOKENS (one per line) in the `txn-token` header.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
  tokens[#tokens + 1] = line
end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", "/v1/orders/7", { ["txn-token"] = tokens[i], ["x-tenant-id"] = "acme" })
end
