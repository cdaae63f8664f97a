pub mod device;
pub mod order;
pub mod soap;
pub mod wechatpay;
