namespace vidfarm::models { void MathPlaceholder() {} }
