-- wrk script for `make bench`, DPoP cases: $TOKEN is one DPoP-bound token,
-- $PROOFS a file of proofs, one per line, each sent once (a proof is accepted
-- once). When they run out, requests go without a proof (refused, counted as
-- non-2xx: the pool was too small, raise BENCH_DPOP_POOL).
local token = os.getenv("TOKEN")
local proofs = {}
for line in io.lines(os.getenv("PROOFS")) do
  proofs[#proofs + 1] = line
end
local i = 0
request = function()
  i = i + 1
  local proof = proofs[i]
  if proof == nil then
    return wrk.format("GET", "/v1/orders/7", { ["x-tenant-id"] = "acme" })
  end
  return wrk.format("GET", "/v1/orders/7", { ["authorization"] = "DPoP " .. token, ["dpop"] = proof, ["x-tenant-id"] = "acme" })
end
