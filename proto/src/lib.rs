pub mod device;
pub mod order;
