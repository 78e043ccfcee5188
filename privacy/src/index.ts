/**
 * @fedmq/privacy — differential privacy for federated learning (docs/privacy.md): the privacy
 * accountant (RDP of the Poisson-subsampled Gaussian, conversion to (ε, δ), calibration of the
 * noise multiplier) and the noise samplers (Gaussian and discrete Gaussian from a CSPRNG).
 */
export {};
