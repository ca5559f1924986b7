# The operator image, ghcr.io/modelrollout/operator:<version>: Pepr's controller with this
# project's production dependencies, for Pepr's custom-image route. Build from the repository root:
#   npx pepr build -i ghcr.io/modelrollout/operator:0.1.0   # the module + manifests naming this image
#   docker build -t ghcr.io/modelrollout/operator:0.1.0 .
#   npx tsx hack/images.ts operator                          # both, with buildah (docs/install.md)
#
# As with Pepr's stock controller image, the Deployment `pepr build` writes runs
# `node /app/node_modules/pepr/dist/controller.js <hash>`: the controller reads the module
# `pepr build` bundled (pepr.ts, with the connection fix capabilities/shared-http-agent.ts as its
# first import) from the Secret mounted at /app/load, checks its hash, writes it to /app and runs
# it. What this image adds over the stock one: the packages the module resolves at run time
# (kubernetes-fluent-client and the undici it patches, pepr) at the lockfile's exact versions.
# The first steps are the picker runtime stage's (picker/Dockerfile), so a builder with a layer
# cache shares them.

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund
# The controller writes the module it runs into /app; Pepr's Deployment runs as 65532:65532.
RUN chown 65532:65532 /app
USER 65532:65532
EXPOSE 3000
ENTRYPOINT ["node"]
CMD ["/app/node_modules/pepr/dist/controller.js"]
